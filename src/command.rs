//! Running external programs (Python's `subprocess`).
