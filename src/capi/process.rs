//! Processes (`weft_process_*`) and the current process.
