//! `image::registry` against a real registry (Debian's `docker-registry`, plain, TLS with basic
//! auth, and read-only): finding a manifest by tag, tagging it again with the same digest, and
//! what each refusal looks like. The hook's reuse by content stands on these two calls.

use runner_k8s_hook::image::reference::Digest;
use runner_k8s_hook::image::registry::{Access, Registry as Client, RegistryError};
use secrecy::SecretString;

use crate::support::registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry};

fn plain_access(registry: &Registry) -> Access {
    Access {
        host: registry.host.clone(),
        credentials: None,
        ca_pem: None,
        plain_http: true,
    }
}

fn tls_access(registry: &Registry, password: &str) -> Access {
    let tls = registry.tls.as_ref().unwrap();
    Access {
        host: registry.host.clone(),
        credentials: Some((REGISTRY_USER.to_owned(), SecretString::from(password))),
        ca_pem: Some(std::fs::read(tls.cert_dir.join("ca.crt")).unwrap()),
        plain_http: false,
    }
}

#[tokio::test]
async fn a_manifest_is_found_by_tag_and_tagged_again_with_the_same_digest() {
    let registry = Registry::plain();
    let pushed = registry.put_image("actions/hello", "key-1", "one");
    let client = Client::new(&plain_access(&registry)).unwrap();

    let found = client
        .find("actions/hello", "key-1")
        .await
        .unwrap()
        .expect("the key tag is there");
    assert_eq!(found.digest, Digest::parse(&pushed).unwrap());

    client
        .retag("actions/hello", &found, "a1b2c3d4e5f60718")
        .await
        .unwrap();
    assert_eq!(registry.digest("actions/hello", "a1b2c3d4e5f60718"), pushed);
    assert_eq!(
        registry.digest("actions/hello", "key-1"),
        pushed,
        "the key tag stays"
    );
}

#[tokio::test]
async fn a_missing_tag_or_repository_is_none() {
    let registry = Registry::plain();
    registry.put_image("actions/hello", "key-1", "one");
    let client = Client::new(&plain_access(&registry)).unwrap();
    assert!(
        client
            .find("actions/hello", "key-2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .find("actions/other", "key-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn tls_with_basic_auth_works_and_a_wrong_password_is_denied() {
    let registry = Registry::tls();
    let pushed = registry.put_image("actions/hello", "key-1", "one");

    let client = Client::new(&tls_access(&registry, REGISTRY_PASSWORD)).unwrap();
    let found = client
        .find("actions/hello", "key-1")
        .await
        .unwrap()
        .unwrap();
    client
        .retag("actions/hello", &found, "0123456789abcdef")
        .await
        .unwrap();
    assert_eq!(registry.digest("actions/hello", "0123456789abcdef"), pushed);

    let wrong = Client::new(&tls_access(&registry, "wrong")).unwrap();
    let err = wrong.find("actions/hello", "key-1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Denied { .. }), "{err:?}");
    assert!(err.to_string().contains("actions/hello:key-1"), "{err}");
    assert!(!err.to_string().contains("wrong"), "no password in {err}");
}

#[tokio::test]
async fn a_private_ca_that_is_not_given_fails_without_hanging() {
    let registry = Registry::tls();
    registry.put_image("actions/hello", "key-1", "one");
    let mut access = tls_access(&registry, REGISTRY_PASSWORD);
    access.ca_pem = None;
    let client = Client::new(&access).unwrap();
    let started = std::time::Instant::now();
    let err = client.find("actions/hello", "key-1").await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(matches!(err, RegistryError::Failed { .. }), "{err:?}");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls"),
        "{err}"
    );
}

#[tokio::test]
async fn a_registry_that_refuses_writes_fails_the_retag_with_its_answer() {
    let registry = Registry::plain();
    let pushed = registry.put_image("actions/hello", "key-1", "one");
    let read_only = registry.read_only_view();
    let client = Client::new(&plain_access(&read_only)).unwrap();
    let found = client
        .find("actions/hello", "key-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.digest.as_str(), pushed);
    let err = client
        .retag("actions/hello", &found, "0123456789abcdef")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("actions/hello:0123456789abcdef"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_an_error_not_a_miss() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&Access {
        host: format!("127.0.0.1:{port}"),
        credentials: None,
        ca_pem: None,
        plain_http: true,
    })
    .unwrap();
    let err = client.find("actions/hello", "key-1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Failed { .. }), "{err:?}");
}
