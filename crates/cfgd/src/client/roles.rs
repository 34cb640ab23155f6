//! Least privilege in etcd: a role and a user per job for one namespace,
//! made with etcd's own auth (`cfgctl admin roles NS`).

use etcd_client::{Permission, PermissionType};
use serde::Serialize;

use super::handle::Client;
use crate::error::{etcd_message, Error, Result};
use crate::key::{self, Kind};

/// One etcd role [`Client::create_roles`] made or brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoleGrant {
    /// The role, `cfgd-{ns}-{job}`.
    pub role: String,
    /// Who it is for.
    pub purpose: &'static str,
    /// Its permissions.
    pub permissions: Vec<RoleAccess>,
    /// The user holding it, `cfgd-{ns}-{job}`.
    pub user: String,
    /// The new user's password, made here; `None` when the user existed
    /// (its password is left alone).
    pub password: Option<String>,
}

/// One permission of a [`RoleGrant`]: `read` or `readwrite` on the keys
/// from `start` up to, not including, `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoleAccess {
    /// `read` or `readwrite`.
    pub access: &'static str,
    /// The first key.
    pub start: String,
    /// The key after the last.
    pub end: String,
}

impl Client {
    /// Creates the etcd roles and users of this client's namespace, for a
    /// client connected as an etcd user that may manage auth (`root`):
    ///
    /// - `cfgd-{ns}-read`, for services: read the namespace's config, flags,
    ///   schemas and policy (one range, from `config/` to `schemas/`, which
    ///   also holds its change requests, since etcd checks a watch against a
    ///   single range); not the audit trail, not another namespace;
    /// - `cfgd-{ns}-write`, for people and tools that change values: also
    ///   write values, flags, change requests and the audit records written
    ///   with them; schemas and the policy stay read-only;
    /// - `cfgd-{ns}-server`, for `cfgd serve`: everything under the
    ///   namespace.
    ///
    /// Each has a user of the same name with a new random password. Run
    /// again, it grants the same permissions and leaves existing users'
    /// passwords alone.
    pub async fn create_roles(&self) -> Result<Vec<RoleGrant>> {
        let base = self.state.space.base().to_owned();
        let namespace = self.state.space.namespace().to_owned();
        let prefix = |p: String| {
            let end = key::prefix_end(p.clone().into_bytes());
            (p, String::from_utf8(end).expect("ASCII keys"))
        };
        let (read_start, read_end) = key::sections_range(&base);
        let mirrored = (
            String::from_utf8(read_start).expect("ASCII keys"),
            String::from_utf8(read_end).expect("ASCII keys"),
        );
        let audit = prefix(key::trail_prefix(&base, key::AUDIT));
        let flags = prefix(key::kind_prefix(&base, Kind::Flags));
        let requests = prefix(key::trail_prefix(&base, key::REQUESTS));
        let jobs = [
            (
                "read",
                "services: read config, flags, schemas",
                vec![("read", mirrored.clone())],
            ),
            (
                "write",
                "people and tools: also write values and flags",
                vec![
                    ("read", mirrored),
                    // audit/, config/ and flags/ sort together.
                    ("readwrite", (audit.0, flags.1)),
                    ("readwrite", requests),
                ],
            ),
            (
                "server",
                "cfgd serve: the whole namespace",
                vec![("readwrite", prefix(base))],
            ),
        ];
        let etcd = self.state.etcd();
        let mut auth = etcd.etcd().await?.client.auth_client();
        let denied = |e: etcd_client::Error| Error::Roles {
            reason: etcd_message(&e),
        };
        let mut out = Vec::new();
        for (job, purpose, permissions) in jobs {
            let role = format!("cfgd-{namespace}-{job}");
            match auth.role_add(role.as_str()).await {
                Ok(_) => {}
                Err(e) if etcd_message(&e).contains("already exists") => {}
                Err(e) => return Err(denied(e)),
            }
            for (kind, (start, end)) in &permissions {
                let perm_type = match *kind {
                    "read" => PermissionType::Read,
                    _ => PermissionType::Readwrite,
                };
                let permission =
                    Permission::new(perm_type, start.as_str()).with_range_end(end.as_str());
                auth.role_grant_permission(role.as_str(), permission)
                    .await
                    .map_err(denied)?;
            }
            let user = role.clone();
            let fresh = new_password();
            let password = match auth.user_add(user.as_str(), fresh.as_str(), None).await {
                Ok(_) => Some(fresh),
                Err(e) if etcd_message(&e).contains("already exists") => None,
                Err(e) => return Err(denied(e)),
            };
            auth.user_grant_role(user.as_str(), role.as_str())
                .await
                .map_err(denied)?;
            out.push(RoleGrant {
                role,
                purpose,
                permissions: permissions
                    .into_iter()
                    .map(|(access, (start, end))| RoleAccess { access, start, end })
                    .collect(),
                user,
                password,
            });
        }
        Ok(out)
    }
}

/// 24 random bytes as 32 URL-safe characters, never starting with `-`:
/// `--password -Uf3…` would read as an option on a command line (the
/// cfgctl roles test met one, a 1-in-64 chance).
fn new_password() -> String {
    use base64::Engine as _;
    loop {
        let password =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::secret::random::<24>());
        if !password.starts_with('-') {
            return password;
        }
    }
}
