//! Finding the primary: the configured address, or whatever address Sentinel names for the
//! master, with the URL's credentials, database and TLS settings (a private CA if configured).

use super::StoreError;

/// How to reach the primary and the nodes: the URL's address, or whatever address Sentinel
/// names for the master, with the URL's credentials, database and TLS settings.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) info: redis::ConnectionInfo,
    pub(super) ca_pem: Option<Vec<u8>>,
    pub(super) sentinel: Option<(String, Vec<redis::Client>)>,
}

impl Target {
    fn client(&self, info: redis::ConnectionInfo) -> Result<redis::Client, StoreError> {
        let r = match &self.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        r.map_err(|_| StoreError::InvalidUrl("URL (no client can be built from it)"))
    }

    /// The primary's client, asking Sentinel (each sentinel in turn) where it is.
    pub(super) async fn primary(&self) -> Result<redis::Client, StoreError> {
        let Some((master, sentinels)) = &self.sentinel else {
            return self.client(self.info.clone());
        };
        for s in sentinels {
            let Ok(mut con) = s.get_multiplexed_async_connection().await else {
                continue;
            };
            let addr: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async(&mut con)
                .await;
            if let Ok(Some((host, port))) = addr {
                let addr = match self.info.addr() {
                    redis::ConnectionAddr::TcpTls {
                        insecure,
                        tls_params,
                        ..
                    } => redis::ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: *insecure,
                        tls_params: tls_params.clone(),
                    },
                    _ => redis::ConnectionAddr::Tcp(host, port),
                };
                return self.client(self.info.clone().set_addr(addr));
            }
        }
        Err(StoreError::NoPrimary(master.clone()))
    }
}
