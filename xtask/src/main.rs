//! Build chores: `cargo xtask dist` and friends.
fn main() {}
