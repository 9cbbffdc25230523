"""weft.subprocess against the standard library's subprocess: the same calls give the same
return codes, outputs and exceptions (tests parametrized with ``sp`` run against both)."""

import errno
import io
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import weft
import weft.subprocess as wsp

IMPLEMENTATIONS = {"subprocess": subprocess, "weft": wsp}
MIB = 1024 * 1024
JOIN = 20.0


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def sp(request):
    return IMPLEMENTATIONS[request.param]


def both(fn):
    """fn(module) for the standard library and weft: (stdlib's result, weft's)."""
    return fn(subprocess), fn(wsp)


def raised(fn):
    try:
        fn()
    except BaseException as e:  # noqa: B902 - compared by the caller
        return e
    raise AssertionError("no exception")


# --- run ----------------------------------------------------------------------------------


def test_module_shape():
    assert weft.subprocess is wsp
    assert (wsp.PIPE, wsp.STDOUT, wsp.DEVNULL) == (subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)
    assert wsp.CalledProcessError is subprocess.CalledProcessError
    assert wsp.TimeoutExpired is subprocess.TimeoutExpired
    assert wsp.CompletedProcess is subprocess.CompletedProcess


def test_return_codes(sp):
    r = sp.run(["true"])
    assert type(r) is subprocess.CompletedProcess
    assert (r.args, r.returncode, r.stdout, r.stderr) == (["true"], 0, None, None)
    assert sp.run(["false"]).returncode == 1
    assert sp.run(["sh", "-c", "exit 42"]).returncode == 42
    assert sp.run("true").returncode == 0  # a str is the program alone
    assert sp.run(["sh", "-c", "kill -TERM $$"]).returncode == -signal.SIGTERM
    assert sp.run([b"/bin/sh", b"-c", "exit 3"]).returncode == 3
    assert sp.run([Path("/bin/sh"), "-c", "exit 4"]).returncode == 4
    r = sp.run(("sh", "-c", "exit 5"))
    assert r.returncode == 5 and r.args == ("sh", "-c", "exit 5")


def test_check(sp):
    assert sp.run(["true"], check=True).returncode == 0
    with pytest.raises(subprocess.CalledProcessError) as e:
        sp.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=True, capture_output=True)
    assert (e.value.returncode, e.value.cmd) == (7, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (e.value.stdout, e.value.stderr) == (b"out\n", b"err\n")
    assert str(e.value) == "Command '['sh', '-c', 'echo out; echo err >&2; exit 7']' returned non-zero exit status 7."
    with pytest.raises(subprocess.CalledProcessError) as e:
        sp.run(["sh", "-c", "kill -KILL $$"], check=True)
    assert e.value.returncode == -9 and "died with <Signals.SIGKILL: 9>" in str(e.value)
    r = sp.run(["sh", "-c", "kill -KILL $$"])
    r2 = raised(r.check_returncode)
    assert isinstance(r2, subprocess.CalledProcessError)


def test_capture_and_streams(sp, tmp_path):
    r = sp.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = sp.run(["sh", "-c", "echo out; echo err >&2"], stdout=sp.PIPE)
    assert (r.stdout, r.stderr) == (b"out\n", None)
    r = sp.run(["sh", "-c", "echo out; echo err >&2"], stdout=sp.PIPE, stderr=sp.STDOUT)
    assert (r.stdout, r.stderr) == (b"out\nerr\n", None)
    r = sp.run(["sh", "-c", "echo out; echo err >&2"], stdout=sp.DEVNULL, stderr=sp.PIPE)
    assert (r.stdout, r.stderr) == (None, b"err\n")
    r = sp.run(["cat"], stdin=sp.DEVNULL, capture_output=True)
    assert (r.stdout, r.stderr) == (b"", b"")
    with open(tmp_path / "f", "wb") as f:
        sp.run(["sh", "-c", "echo to-file; echo err-to-fd >&2"], stdout=f, stderr=f.fileno())
    assert (tmp_path / "f").read_bytes() == b"to-file\nerr-to-fd\n"
    (tmp_path / "in").write_bytes(b"from a file")
    with open(tmp_path / "in", "rb") as f:
        assert sp.run(["cat"], stdin=f, stdout=sp.PIPE).stdout == b"from a file"


def test_input(sp):
    assert sp.run(["cat"], input=b"hello", capture_output=True).stdout == b"hello"
    assert sp.run(["cat"], input=b"", capture_output=True).stdout == b""
    assert sp.run(["cat"], input=bytearray(b"ba"), stdout=sp.PIPE).stdout == b"ba"
    assert sp.run(["cat"], input=memoryview(b"mv"), stdout=sp.PIPE).stdout == b"mv"
    # A child that does not read its input is no error.
    assert sp.run(["true"], input=b"x" * MIB).returncode == 0
    with pytest.raises(ValueError, match="stdin and input"):
        sp.run(["cat"], input=b"x", stdin=sp.PIPE)
    with pytest.raises(ValueError, match="capture_output"):
        sp.run(["true"], capture_output=True, stdout=sp.PIPE)


def test_text_mode(sp):
    r = sp.run(["sh", "-c", "printf 'a\\r\\nb\\rc\\n'; printf 'é' >&2"], capture_output=True, text=True)
    assert (r.stdout, r.stderr) == ("a\nb\nc\n", "é")
    r = sp.run(["cat"], input="ünï", stdout=sp.PIPE, encoding="utf-8")
    assert r.stdout == "ünï"
    r = sp.run(["cat"], input="x", stdout=sp.PIPE, universal_newlines=True)
    assert r.stdout == "x"
    r = sp.run(["sh", "-c", "printf '\\377'"], stdout=sp.PIPE, encoding="utf-8", errors="replace")
    assert r.stdout == "\ufffd"


def test_cwd_and_env(sp, tmp_path):
    assert sp.run(["pwd"], cwd=tmp_path, stdout=sp.PIPE).stdout == str(tmp_path).encode() + b"\n"
    assert sp.run(["pwd"], cwd=str(tmp_path), stdout=sp.PIPE).stdout == str(tmp_path).encode() + b"\n"
    # A program name is searched in the PATH of the child's environment (/bin:/usr/bin if none).
    r = sp.run(["sh", "-c", "echo $FOO-$BAR"], env={"FOO": "foo", b"BAR": b"bar"}, stdout=sp.PIPE)
    assert r.stdout == b"foo-bar\n"
    r = sp.run(["env"], env={"ONLY": "1"}, stdout=sp.PIPE)
    assert r.stdout == b"ONLY=1\n"
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "my-tool"
    script.write_text("#!/bin/sh\necho my-tool ran\n")
    script.chmod(0o755)
    r = sp.run(["my-tool"], env={"PATH": str(tmp_path / "bin")}, stdout=sp.PIPE)
    assert r.stdout == b"my-tool ran\n"
    # A relative program path is resolved in cwd.
    assert sp.run(["./my-tool"], cwd=tmp_path / "bin", stdout=sp.PIPE).stdout == b"my-tool ran\n"
    with pytest.raises(ValueError):
        sp.run(["true"], env={"A=B": "1"})


def test_only_standard_descriptors_are_inherited():
    fd = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        a, b = both(lambda m: m.run(["sh", "-c", "exec ls /proc/self/fd"], stdout=m.PIPE).stdout.split())
        assert a == b  # 0, 1, 2 and the directory ls reads
        assert str(fd).encode() not in b and b[:3] == [b"0", b"1", b"2"]
    finally:
        os.close(fd)


# --- exec failures ------------------------------------------------------------------------


def test_missing_program(tmp_path):
    for call in (lambda m: m.run(["no-such-program-weft-test"]),
                 lambda m: m.Popen(["no-such-program-weft-test", "arg"]),
                 lambda m: m.run([str(tmp_path / "missing")], capture_output=True),
                 lambda m: m.run("no-such-program-weft-test", timeout=5)):
        a, b = both(lambda m: raised(lambda: call(m)))
        assert type(a) is type(b) is FileNotFoundError
        assert (b.errno, b.filename, str(b)) == (a.errno, a.filename, str(a))


def test_not_executable(tmp_path):
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o644)
    for target in (str(f), f, tmp_path):  # a plain file; a directory
        a, b = both(lambda m: raised(lambda: m.run([target])))
        assert type(a) is type(b) is PermissionError
        assert (b.errno, b.filename, str(b)) == (a.errno, a.filename, str(a))
        assert b.errno == errno.EACCES


def test_missing_cwd(tmp_path):
    a, b = both(lambda m: raised(lambda: m.run(["true"], cwd=tmp_path / "nowhere")))
    assert type(a) is type(b) is FileNotFoundError
    assert (b.errno, b.filename, str(b)) == (a.errno, a.filename, str(a))


def test_bad_arguments():
    for args in ([], ["tr\0ue"]):
        a, b = both(lambda m: raised(lambda: m.run(args)))
        assert type(a) is type(b), (a, b)
    with pytest.raises(ValueError):
        wsp.run(["true"], env={"A": "x\0y"})


# --- timeouts -----------------------------------------------------------------------------


def test_run_timeout(sp):
    with pytest.raises(subprocess.TimeoutExpired) as e:
        sp.run(["sleep", "30"], timeout=0.2)
    assert e.value.cmd == ["sleep", "30"] and 0 < e.value.timeout <= 0.2  # CPython: the time left
    # The output read until the child was killed comes with the exception.
    with pytest.raises(subprocess.TimeoutExpired) as e:
        sp.run(["sh", "-c", "echo partial; echo err >&2; exec sleep 30"], capture_output=True, timeout=2)
    assert (e.value.stdout, e.value.stderr) == (b"partial\n", b"err\n")
    assert sp.run(["true"], timeout=30).returncode == 0


def test_popen_wait_and_communicate_timeouts(sp):
    p = sp.Popen(["sh", "-c", "echo early; exec sleep 30"], stdout=sp.PIPE)
    with pytest.raises(subprocess.TimeoutExpired) as e:
        p.wait(timeout=0.1)
    assert e.value.timeout == 0.1 and p.returncode is None and p.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        p.communicate(timeout=0.1)
    p.kill()
    out, err = p.communicate()  # continues: nothing read before the timeout is lost
    assert (out, err) == (b"early\n", None)
    assert p.returncode == -signal.SIGKILL


# --- big data -----------------------------------------------------------------------------


def test_10_mib_through_cat_both_ways(sp):
    data = os.urandom(10 * MIB)
    r = sp.run(["cat"], input=data, capture_output=True)
    assert r.returncode == 0 and r.stdout == data and r.stderr == b""
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE, stderr=sp.PIPE)
    out, err = p.communicate(data, timeout=60)
    assert (out == data, err, p.returncode) == (True, b"", 0)
    # Both directions at once with large stderr too: no deadlock.
    p = sp.Popen(["sh", "-c", "cat; head -c 3000000 /dev/zero >&2"], stdin=sp.PIPE, stdout=sp.PIPE, stderr=sp.PIPE)
    out, err = p.communicate(data)
    assert out == data and err == b"\0" * 3000000


def test_10_mib_through_the_file_objects(sp):
    data = os.urandom(10 * MIB)
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE)

    def feed():
        p.stdin.write(data)
        p.stdin.close()  # the child reads end of file

    t = threading.Thread(target=feed)
    t.start()
    out = p.stdout.read()
    t.join(JOIN)
    p.stdout.close()
    assert out == data and p.wait() == 0


# --- Popen --------------------------------------------------------------------------------


def test_popen_file_objects(sp):
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE)
    assert isinstance(p.pid, int) and p.pid > 0
    assert p.stderr is None
    assert isinstance(p.stdin, io.BufferedWriter) and isinstance(p.stdout, io.BufferedReader)
    assert p.poll() is None
    p.stdin.write(b"line 1\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"line 1\n"
    p.stdin.write(b"rest")
    p.stdin.close()
    assert p.stdout.read() == b"rest"
    p.stdout.close()
    assert p.wait() == 0 and p.returncode == 0 and p.poll() == 0


def test_popen_text_file_objects(sp):
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE, text=True)
    assert isinstance(p.stdin, io.TextIOWrapper)
    p.stdin.write("ünï\r\n")
    p.stdin.close()
    assert p.stdout.read() == "ünï\n"
    p.stdout.close()
    assert p.wait() == 0


def test_popen_communicate(sp):
    p = sp.Popen(["sh", "-c", "cat; echo err >&2"], stdin=sp.PIPE, stdout=sp.PIPE, stderr=sp.PIPE)
    assert p.communicate(b"in") == (b"in", b"err\n")
    assert p.returncode == 0
    assert p.stdout.closed and p.stderr.closed and p.stdin.closed
    with pytest.raises(ValueError, match="Cannot send input after starting communication"):
        p.communicate(b"more")
    # stdin written partly by the program, the rest by communicate
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE)
    p.stdin.write(b"first ")
    assert p.communicate(b"second") == (b"first second", None)
    # stdin closed by the program first (CPython's communicate raises ValueError here, as
    # it flushes the closed file when two streams are pipes; weft does not)
    if sp is wsp:
        p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE)
        p.stdin.write(b"written")
        p.stdin.close()
        assert p.communicate() == (b"written", None)
    # no pipes at all
    p = sp.Popen(["true"])
    assert p.communicate() == (None, None) and p.returncode == 0
    # only stdin: input ignored when stdin is not a pipe
    p = sp.Popen(["cat"], stdin=sp.DEVNULL, stdout=sp.PIPE)
    assert p.communicate(b"ignored") == (b"", None)
    # text
    p = sp.Popen(["cat"], stdin=sp.PIPE, stdout=sp.PIPE, text=True)
    assert p.communicate("a\r\nb") == ("a\nb", None)


def test_signals(sp):
    p = sp.Popen(["sleep", "30"])
    p.terminate()
    assert p.wait() == -signal.SIGTERM
    p.terminate()  # after the end: nothing
    p.kill()
    p.send_signal(signal.SIGUSR1)
    p = sp.Popen(["sleep", "30"])
    p.kill()
    assert p.wait() == -signal.SIGKILL
    p = sp.Popen(["sleep", "30"])
    p.send_signal(signal.SIGUSR1)
    assert p.wait() == -signal.SIGUSR1


def test_context_manager_and_repr(sp):
    with sp.Popen(["sh", "-c", "exit 3"], stdout=sp.PIPE) as p:
        assert repr(p) == f"<Popen: returncode: None args: ['sh', '-c', 'exit 3']>"
    assert p.returncode == 3 and p.stdout.closed
    assert repr(p) == "<Popen: returncode: 3 args: ['sh', '-c', 'exit 3']>"
    p = sp.Popen(["true", "x" * 100])
    assert repr(p).endswith("...>") and len(repr(p)) == 80
    p.wait()


def test_wait_releases_the_gil(sp):
    p = sp.Popen(["sleep", "30"])

    def killer():
        time.sleep(0.1)
        p.kill()

    t = threading.Thread(target=killer)
    t.start()
    assert p.wait() == -signal.SIGKILL
    t.join(JOIN)


def test_start_new_session(sp):
    def sid(**kw):
        p = sp.Popen(["sh", "-c", "exec cat /proc/self/stat"], stdout=sp.PIPE, **kw)
        out, _ = p.communicate()
        fields = out.rsplit(b")", 1)[1].split()
        return p.pid, int(fields[3])  # session id: field 6 of stat
    pid, s = sid(start_new_session=True)
    assert s == pid
    pid, s = sid()
    assert s == os.getsid(0)


# --- conveniences -------------------------------------------------------------------------


def test_call_check_call_check_output(sp):
    assert sp.call(["sh", "-c", "exit 4"]) == 4
    assert sp.call(["true"], stdout=sp.DEVNULL) == 0
    assert sp.check_call(["true"]) == 0
    with pytest.raises(subprocess.CalledProcessError) as e:
        sp.check_call(["sh", "-c", "exit 2"])
    assert (e.value.returncode, e.value.cmd) == (2, ["sh", "-c", "exit 2"])
    assert sp.check_output(["echo", "hi"]) == b"hi\n"
    assert sp.check_output(["cat"], input=b"in") == b"in"
    assert sp.check_output(["cat"], input=None) == b""  # explicit None: empty input
    assert sp.check_output(["echo", "hi"], text=True) == "hi\n"
    assert sp.check_output(["sh", "-c", "echo err >&2; echo out"], stderr=sp.STDOUT) == b"err\nout\n"
    with pytest.raises(subprocess.CalledProcessError) as e:
        sp.check_output(["sh", "-c", "echo partial; exit 9"])
    assert (e.value.returncode, e.value.output) == (9, b"partial\n")
    with pytest.raises(ValueError, match="stdout argument not allowed"):
        sp.check_output(["true"], stdout=sp.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        sp.check_output(["sleep", "30"], timeout=0.2)
    with pytest.raises(subprocess.TimeoutExpired):
        sp.call(["sleep", "30"], timeout=0.2)


def test_handles_are_freed():
    import gc
    from weft._native import live_handles

    gc.collect()
    before = live_handles().get("command", 0)
    ps = [wsp.Popen(["cat"], stdin=wsp.PIPE, stdout=wsp.PIPE) for _ in range(5)]
    assert live_handles()["command"] == before + 5
    for p in ps:
        p.communicate(b"x")
    del ps, p
    gc.collect()
    assert live_handles()["command"] == before


def test_many_commands_leave_no_zombies():
    for _ in range(50):
        assert wsp.run(["true"]).returncode == 0
    p = wsp.Popen(["true"])
    p.wait()
    children = [int(x) for x in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()]
    zombies = [(c, open(f"/proc/{c}/stat").read()) for c in children if _state(c) == "Z"]
    assert zombies == []


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None
