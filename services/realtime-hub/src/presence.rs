//! Who is in an interview: participants' public identity and their colours.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Cursor and avatar colours, distinct on light and dark backgrounds. A user's colour is picked from
/// its stable id, so it stays the same across reconnects and hubs.
pub const PALETTE: [&str; 12] = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#9a6324", "#800000",
];

/// The colour of a user.
pub fn color_for(user_id: Uuid) -> &'static str {
    let n = user_id.as_u128();
    PALETTE[(n ^ (n >> 64)) as usize % PALETTE.len()]
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user_id: Uuid,
    pub name: String,
    pub color: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_and_from_the_palette() {
        let u = Uuid::new_v4();
        assert_eq!(color_for(u), color_for(u));
        assert!(PALETTE.contains(&color_for(u)));
    }
}
