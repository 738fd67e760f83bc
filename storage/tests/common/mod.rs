//! Set-up shared by this crate's integration tests.

use aurora_storage::auth::{Accounts, Principal, Role};
use aurora_storage::Db;

/// A new org with `email` as its admin, as the principal requests carry.
pub async fn principal(db: &Db, email: &str, org: &str) -> Principal {
    let user = Accounts::new(db.clone(), 1, 0)
        .admin_create_user(email, "correct horse battery", org, Role::Admin)
        .await
        .unwrap();
    Principal {
        user_id: user.id,
        org_id: user.org_id,
        email: user.email,
        role: Role::Admin,
    }
}
