//! Child processes running a `weft_task_fn` (Python's `multiprocessing.Process`): start methods fork, forkserver and spawn, tracked by pidfd.
