//! Which part of the live mount an inode number belongs to. Every callback
//! of the adapter matches one [`Route`] instead of asking each range in
//! turn: the live volume's inodes, the `.lsvfs/` control nodes (far above
//! any inode the volume hands out) and the views of `.lsvfs/sync-points/`
//! (bit 62 set, see `sync_points.rs`).

use super::control_nodes::{self, ControlNode};
use super::sync_points;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An inode of the live volume.
    Live(u64),
    /// A node of `.lsvfs/`, `.lsvfs/sync-points` itself included.
    Control(ControlNode),
    /// The symlink in `.lsvfs/sync-points` that names sync point `id` by
    /// its label.
    Label(u64),
    /// Inode `ino` (the view's own number) of sync point `id`'s view.
    View { id: u64, ino: u64 },
}

pub fn route(ino: u64) -> Route {
    if let Some(node) = control_nodes::node(ino) {
        return Route::Control(node);
    }
    match sync_points::decode(ino) {
        Some((id, 0)) => Route::Label(id),
        Some((id, ino)) => Route::View { id, ino },
        None => Route::Live(ino),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::ROOT_INO;

    #[test]
    fn every_range_routes_to_its_own_kind() {
        assert_eq!(route(ROOT_INO), Route::Live(ROOT_INO));
        assert_eq!(route(u64::MAX - 15), Route::Control(ControlNode::Dir));
        let sync_points = control_nodes::SYNC_POINTS_INO;
        assert_eq!(route(sync_points), Route::Control(ControlNode::SyncPoints));
        assert_eq!(route(1 << 62 | 7 << 32), Route::Label(7));
        assert_eq!(route(1 << 62 | 7 << 32 | 1), Route::View { id: 7, ino: 1 });
    }
}
