//! Commands (`weft_command_*`): Python's `subprocess`.
