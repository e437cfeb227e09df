//! The container recipe and the Kubernetes samples stay in step with the
//! binary: every sample's arguments parse as the CLI defines them, and no
//! sample needs what the image lacks. (Building the image needs base images
//! from a registry; `scripts/scratch-image.sh` checks the scratch variant.)

use clap::Parser;
use gcore_iam_bulk::cli::Cli;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The items of the first `args:` list in a manifest, `$(SHARD)` given a
/// value as Kubernetes would.
fn container_args(manifest: &str) -> Vec<String> {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "args:");
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let indent = header.len() - header.trim_start().len();
    lines
        .take_while(|l| l.len() - l.trim_start().len() > indent && l.trim().starts_with("- "))
        .map(|l| l.trim().trim_start_matches("- ").replace("$(SHARD)", "2"))
        .collect()
}

#[test]
fn kubernetes_samples_parse_and_need_no_shell() {
    for sample in ["samples/k8s/cronjob.yaml", "samples/k8s/indexed-job.yaml"] {
        let manifest = repo_file(sample);
        let args = container_args(&manifest);
        assert!(args.len() > 3, "{sample}: no args found");
        let parsed = Cli::try_parse_from(std::iter::once("gcore-iam-bulk".to_string()).chain(args));
        assert!(
            parsed.is_ok(),
            "{sample}: {}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
        assert!(
            !manifest.contains("/bin/sh"),
            "{sample}: the image has no shell"
        );
        assert!(manifest.contains("runAsNonRoot: true"), "{sample}");
        assert!(manifest.contains("# from ../../Dockerfile"), "{sample}");
    }
}

#[test]
fn dockerfile_builds_with_the_rust_version_the_crate_declares_and_runs_non_root() {
    let dockerfile = repo_file("Dockerfile");
    let manifest = repo_file("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml declares rust-version")
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "the Dockerfile builds with another Rust than rust-version {rust_version}"
    );
    // Each image users get ends as user 65532 with CA certificates.
    for stage in [
        "FROM scratch AS scratch",
        "FROM gcr.io/distroless/cc-debian12:nonroot AS runtime",
    ] {
        let body: String = dockerfile
            .split(stage)
            .nth(1)
            .unwrap_or_else(|| panic!("no stage `{stage}`"))
            .split("\nFROM ")
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(body.contains("USER 65532:65532"), "{stage}");
        assert!(body.contains("ENTRYPOINT"), "{stage}");
    }
    assert!(dockerfile.contains("ca-certificates.crt"));
    // The default image is the last stage.
    assert!(
        dockerfile
            .trim_end()
            .rsplit("\nFROM ")
            .next()
            .unwrap_or_default()
            .starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "the last stage is not the distroless runtime"
    );
    let ignore = repo_file(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "/target"),
        ".dockerignore keeps target out"
    );
}
