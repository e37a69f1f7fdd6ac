//! Client calls for the scheduling policy: allocations by reference (`42` or `42_7`), hold /
//! release / requeue, whole arrays, tenants and vClusters.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use lattice_core::tenant::TenantRequest;
use lattice_core::vcluster::VClusterRequest;
use lattice_core::views::{ArrayView, TenantView, VClusterView};
use lattice_core::{AllocId, Allocation};

use crate::{Client, ClientError};

/// The answer to an operation on a whole array.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArrayChange {
    pub array_id: AllocId,
    /// The allocations it changed (for a requeue: the new ones).
    pub changed: Vec<AllocId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VClusterList {
    pub vclusters: Vec<VClusterInfo>,
}

/// A vCluster as `/api/v1/vclusters` answers it.
pub type VClusterInfo = VClusterView;

fn body<T: Serialize>(v: &T) -> Result<serde_json::Value, ClientError> {
    serde_json::to_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

impl Client {
    /// One allocation by reference: `42`, or `42_7` for task 7 of array 42.
    pub async fn get_allocation_ref(&self, r: &str) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{r}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// Cancels one allocation by reference.
    pub async fn cancel_ref(&self, r: &str) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{r}");
        self.json(Method::DELETE, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// `action` is `hold`, `release` or `requeue` (which answers the new allocation).
    pub async fn allocation_action(
        &self,
        r: &str,
        action: &str,
    ) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{r}/{action}");
        self.json(Method::POST, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn array(&self, id: AllocId) -> Result<ArrayView, ClientError> {
        let path = format!("/api/v1/arrays/{id}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn cancel_array(&self, id: AllocId) -> Result<ArrayChange, ClientError> {
        let path = format!("/api/v1/arrays/{id}");
        self.json(Method::DELETE, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// `action` is `hold`, `release` or `requeue`.
    pub async fn array_action(
        &self,
        id: AllocId,
        action: &str,
    ) -> Result<ArrayChange, ClientError> {
        let path = format!("/api/v1/arrays/{id}/{action}");
        self.json(Method::POST, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn tenants(&self) -> Result<Vec<TenantView>, ClientError> {
        let list: TenantList = self
            .json(Method::GET, "/api/v1/tenants", None, None, Self::TIMEOUT)
            .await?;
        Ok(list.tenants)
    }

    pub async fn tenant(&self, name: &str) -> Result<TenantView, ClientError> {
        let path = format!("/api/v1/tenants/{name}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// Creates a tenant (`req.name` is required).
    pub async fn create_tenant(&self, req: &TenantRequest) -> Result<TenantView, ClientError> {
        let b = body(req)?;
        self.json(
            Method::POST,
            "/api/v1/tenants",
            None,
            Some(&b),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn update_tenant(
        &self,
        name: &str,
        req: &TenantRequest,
    ) -> Result<TenantView, ClientError> {
        let path = format!("/api/v1/tenants/{name}");
        let b = body(req)?;
        self.json(Method::PUT, &path, None, Some(&b), Self::TIMEOUT)
            .await
    }

    pub async fn vclusters(&self) -> Result<Vec<VClusterInfo>, ClientError> {
        let list: VClusterList = self
            .json(Method::GET, "/api/v1/vclusters", None, None, Self::TIMEOUT)
            .await?;
        Ok(list.vclusters)
    }

    pub async fn vcluster(&self, name: &str) -> Result<VClusterInfo, ClientError> {
        let path = format!("/api/v1/vclusters/{name}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// Creates a vCluster (`req.name` is required).
    pub async fn create_vcluster(
        &self,
        req: &VClusterRequest,
    ) -> Result<VClusterInfo, ClientError> {
        let b = body(req)?;
        self.json(
            Method::POST,
            "/api/v1/vclusters",
            None,
            Some(&b),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn update_vcluster(
        &self,
        name: &str,
        req: &VClusterRequest,
    ) -> Result<VClusterInfo, ClientError> {
        let path = format!("/api/v1/vclusters/{name}");
        let b = body(req)?;
        self.json(Method::PUT, &path, None, Some(&b), Self::TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcluster_answers_carry_preemption() {
        let json = serde_json::json!({
            "name": "gpu", "features": ["gpu"], "nodes": [], "policy": "backfill",
            "cycle_interval_ms": 500,
            "weights": {"priority": 1, "age": 2, "fairshare": 3, "topology": 4},
            "fairshare_half_life_seconds": 60,
            "created_at": "1970-01-01T00:00:00.000Z", "updated_at": "1970-01-01T00:00:00.000Z",
            "node_count": 2, "free_nodes": 1, "pending_allocations": 0,
            "preemption": false,
        });
        let v: VClusterInfo = serde_json::from_value(json.clone()).unwrap();
        assert!(!v.preemption);
        assert_eq!((v.name.as_str(), v.node_count), ("gpu", 2));
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json,
            "one flat object again"
        );
    }
}
