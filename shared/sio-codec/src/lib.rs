//! duet-sio-codec
