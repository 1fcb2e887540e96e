//! duet-socketio
