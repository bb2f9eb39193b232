//! Account operations: set plan and status, read an account, its usage, the audit trail.

use super::{Manager, check_account};
use crate::admin::error::{ManageError, bad};
use crate::admin::views::{AccountView, AuditView, EventView, KeyUsage, UsageView};
use crate::core::key::AccountStatus;
use crate::service::unix_now;
use crate::store::state::Change;

impl Manager {
    pub async fn set_account(
        &self,
        actor: &str,
        id: &str,
        plan: Option<Option<String>>,
        status: Option<&str>,
    ) -> Result<AccountView, ManageError> {
        let now = unix_now();
        check_account("id", id)?;
        if let Some(Some(p)) = &plan
            && !self.settings.policy.plans.contains_key(p)
        {
            return Err(bad("plan", format!("unknown plan `{p}`")));
        }
        let status = match status {
            None => None,
            Some(s) => Some(
                AccountStatus::parse(s)
                    .ok_or_else(|| bad("status", "expected active, past_due or disabled"))?,
            ),
        };
        let ev = self.event(actor, "account.updated", id, None, now);
        let change = Change::SetAccount {
            id: id.to_string(),
            plan,
            status,
            at: now,
        };
        self.write(change, ev).await?;
        // As written, or as a later write left it.
        self.get_account(id).await
    }

    pub async fn get_account(&self, id: &str) -> Result<AccountView, ManageError> {
        self.store
            .get_account(id)
            .await?
            .as_ref()
            .map(AccountView::from)
            .ok_or(ManageError::NotFound)
    }

    /// Allowed requests per key and per UTC day.
    pub async fn usage(&self, account: &str) -> Result<UsageView, ManageError> {
        let mut keys = self.store.keys_of(Some(account)).await?;
        if keys.is_empty() && self.store.get_account(account).await?.is_none() {
            return Err(ManageError::NotFound);
        }
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        let usage = self.store.usage(&ids).await?;
        Ok(UsageView {
            account: account.to_string(),
            keys: keys
                .iter()
                .map(|k| KeyUsage::new(k, usage.get(&k.id)))
                .collect(),
        })
    }

    pub async fn audit(&self, account: Option<&str>) -> Result<AuditView, ManageError> {
        let events = self.store.audit(account).await?;
        Ok(AuditView {
            events: events.iter().map(EventView::from).collect(),
        })
    }
}
