//! On a company network: an API behind a private CA, and requests through a
//! CONNECT proxy. The CA and the certificates are made here with rcgen; the
//! simulator serves HTTPS on 127.0.0.1; the proxy is a few lines below.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::common::*;

/// The name the proxy tests give the API: it resolves nowhere, so a request
/// that reaches the simulator can only have gone through the proxy.
const PROXIED_HOST: &str = "iam.test";

/// A private CA and a server certificate it signed, for 127.0.0.1 and
/// `iam.test`, written as PEM files into a test's directory.
struct PrivateCa {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl PrivateCa {
    fn new(name: &str) -> PrivateCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), PROXIED_HOST.to_string()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "simulator");
        let server_key = KeyPair::generate().expect("a server key");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");
        PrivateCa {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A simulator serving HTTPS with the server certificate.
    fn simulator(&self) -> Sim {
        Sim::start(
            SimConfig::new(TOKEN)
                .with_generated_accounts(1..=3)
                .with_tls_pem(
                    self.server_cert_pem.as_bytes(),
                    self.server_key_pem.as_bytes(),
                )
                .expect("the certificate and key fit"),
        )
    }
}

fn export_args(url: &str) -> Vec<String> {
    [
        "export",
        "-o",
        "out.csv",
        "--api-url",
        url,
        "--max-attempts",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `export` against `url` with the test token, `extra` args and `env`.
fn export(work: &Work, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = work.command();
    cmd.args(export_args(url))
        .args(extra)
        .env("GCORE_API_KEY", TOKEN)
        .envs(env.iter().copied());
    wait(cmd.spawn().expect("the binary starts"))
}

#[test]
fn a_private_ca_is_refused_with_advice_until_it_is_given() {
    let ca = PrivateCa::new("refused");
    let sim = ca.simulator();
    assert!(sim.url.starts_with("https://127.0.0.1:"), "{}", sim.url);
    let work = Work::new();

    let ran = export(&work, &sim.url, &[], &[]);
    assert_exit(&ran, 2);
    for needle in ["certificate", "--ca-cert", "SSL_CERT_FILE", "UnknownIssuer"] {
        assert!(
            ran.stderr.contains(needle),
            "no `{needle}` in: {}",
            ran.stderr
        );
    }
    assert!(!work.path("out.csv").exists());
    assert!(sim.requests().is_empty(), "nothing reached the API");
}

#[test]
fn ca_cert_flag_trusts_a_private_ca_for_run_plan_and_export() {
    let ca = PrivateCa::new("flag");
    let sim = ca.simulator();
    let work = Work::new();
    // A bundle of two CAs, ours second: every certificate in it counts.
    let other = PrivateCa::new("other");
    work.write("bundle.pem", format!("{}{}", other.ca_pem, ca.ca_pem));

    let ran = export(&work, &sim.url, &["--ca-cert", "bundle.pem"], &[]);
    assert_exit(&ran, 0);
    let exported = read_csv(&work.path("out.csv"));
    assert_eq!(exported.len(), 3, "{exported:?}");

    work.write("moves.csv", reseller_moves(1..=3, 900_042));
    let ran = work
        .run_rows(&sim, "moves.csv", "results.csv")
        .args(["--ca-cert", "bundle.pem"])
        .ran();
    assert_exit(&ran, 0);
    assert!(
        work.results("results.csv")
            .iter()
            .all(|row| row["outcome"] == "updated"),
        "{:?}",
        work.results("results.csv")
    );
    assert_eq!(sim.patches().len(), 3);

    let ran = work
        .plan_rows(&sim, "moves.csv", "plan.csv")
        .args(["--ca-cert", "bundle.pem"])
        .ran();
    assert_exit(&ran, 0);
}

#[test]
fn ssl_cert_file_and_dir_trust_a_private_ca() {
    let ca = PrivateCa::new("env");
    let sim = ca.simulator();
    let work = Work::new();
    let ca_file = work.write("ca.pem", &ca.ca_pem);

    let ran = export(
        &work,
        &sim.url,
        &[],
        &[("SSL_CERT_FILE", ca_file.to_str().expect("a UTF-8 path"))],
    );
    assert_exit(&ran, 0);
    assert_eq!(read_csv(&work.path("out.csv")).len(), 3);

    // SSL_CERT_DIR: every file in the directory counts.
    std::fs::create_dir(work.path("certs")).expect("a directory");
    work.write("certs/company-ca.pem", &ca.ca_pem);
    std::fs::remove_file(work.path("out.csv")).expect("remove");
    let certs = work.path("certs");
    let ran = export(
        &work,
        &sim.url,
        &[],
        &[("SSL_CERT_DIR", certs.to_str().expect("a UTF-8 path"))],
    );
    assert_exit(&ran, 0);
    assert_eq!(read_csv(&work.path("out.csv")).len(), 3);

    // A file that is not there is named, not silently skipped.
    let ran = export(&work, &sim.url, &[], &[("SSL_CERT_FILE", "no-such-ca.pem")]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("SSL_CERT_FILE names no-such-ca.pem"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_ca_cert_file_without_a_certificate_is_a_usage_error() {
    let work = Work::new();
    work.write(
        "key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    for file in ["key.pem", "missing.pem"] {
        let ran = export(&work, "https://127.0.0.1:9", &["--ca-cert", file], &[]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(file), "{}", ran.stderr);
    }
}

#[test]
fn simulate_serves_https_with_tls_cert_and_key() {
    let ca = PrivateCa::new("simulate");
    let work = Work::new();
    work.write("server.pem", &ca.server_cert_pem);
    work.write("server.key", &ca.server_key_pem);
    work.write("ca.pem", &ca.ca_pem);
    let mut sim = work
        .command()
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "1-5",
            "--token",
            TOKEN,
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
        ])
        .spawn()
        .expect("the simulator starts");
    let mut line = String::new();
    BufReader::new(sim.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the simulator prints its address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let ran = export(&work, &url, &["--ca-cert", "ca.pem"], &[]);
    signal(&sim, "TERM");
    let _ = sim.wait();
    assert_exit(&ran, 0);
    assert_eq!(read_csv(&work.path("out.csv")).len(), 5);
}

/// A CONNECT proxy on 127.0.0.1 that tunnels every request to 127.0.0.1 at
/// the port asked for, whatever the host, and remembers what it was asked.
struct ConnectProxy {
    port: u16,
    connects: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("an address").port();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        // The thread lives as long as the test binary: it only ever waits
        // in accept.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || tunnel(client, &seen));
            }
        });
        ConnectProxy { port, connects }
    }

    fn connects(&self) -> Vec<String> {
        self.connects.lock().expect("not poisoned").clone()
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the request head, up to the blank line.
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = (&client).write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    seen.lock().expect("not poisoned").push(target.to_string());
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let Some(Ok(upstream)) = port.map(|p| TcpStream::connect(("127.0.0.1", p))) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    if (&client)
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (Ok(mut up_write), Ok(mut client_write)) = (upstream.try_clone(), client.try_clone())
    else {
        return;
    };
    // Bytes the reader buffered past the head belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let mut client_read = reader.into_inner();
    let mut up_read = upstream;
    let upward = std::thread::spawn(move || {
        if up_write.write_all(&buffered).is_ok() {
            let _ = std::io::copy(&mut client_read, &mut up_write);
        }
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = upward.join();
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("an address").port()
}

#[test]
fn requests_go_through_https_proxy() {
    let ca = PrivateCa::new("proxy");
    let sim = ca.simulator();
    let port = sim.url.rsplit(':').next().expect("a port").to_string();
    let proxy = ConnectProxy::start();
    let work = Work::new();
    work.write("ca.pem", &ca.ca_pem);
    let url = format!("https://{PROXIED_HOST}:{port}");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);

    let ran = export(
        &work,
        &url,
        &["--ca-cert", "ca.pem"],
        &[("HTTPS_PROXY", &proxy_url)],
    );
    assert_exit(&ran, 0);
    assert_eq!(read_csv(&work.path("out.csv")).len(), 3);
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "the proxy saw no CONNECT");
    assert!(
        connects
            .iter()
            .all(|c| *c == format!("{PROXIED_HOST}:{port}")),
        "{connects:?}"
    );
    assert!(!sim.requests().is_empty());
}

#[test]
fn a_proxy_that_is_down_is_named_without_its_password() {
    let port = closed_port();
    let work = Work::new();
    let ran = export(
        &work,
        &format!("https://{PROXIED_HOST}:443"),
        &[],
        &[(
            "HTTPS_PROXY",
            &format!("http://alice:pr0xy-pa55@127.0.0.1:{port}"),
        )],
    );
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .contains(&format!("through the proxy http://127.0.0.1:{port}")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("HTTPS_PROXY"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("pr0xy-pa55"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("alice"), "{}", ran.stderr);
}

#[test]
fn a_proxy_that_refuses_the_tunnel_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let mut head = [0u8; 1024];
            let _ = client.read(&mut head);
            let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let work = Work::new();
    let ran = export(
        &work,
        &format!("https://{PROXIED_HOST}:443"),
        &[],
        &[("HTTPS_PROXY", &format!("http://127.0.0.1:{port}"))],
    );
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .contains(&format!("through the proxy http://127.0.0.1:{port}")),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_api_on_this_machine_is_never_proxied() {
    let ca = PrivateCa::new("loopback");
    let sim = ca.simulator();
    let work = Work::new();
    work.write("ca.pem", &ca.ca_pem);
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let ran = export(
        &work,
        &sim.url,
        &["--ca-cert", "ca.pem"],
        &[("HTTPS_PROXY", &dead), ("ALL_PROXY", &dead)],
    );
    assert_exit(&ran, 0);
}
