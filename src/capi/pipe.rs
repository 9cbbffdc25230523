//! Connections and listeners (`weft_connection_*`, `weft_listener_*`).
