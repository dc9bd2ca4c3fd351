# Entry points of the project. `just test` and `just demo` do all their own set-up.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := `rustc -vV | sed -n 's/^host: //p'`
runner := "target/" + target + "/release/sandbox-runner"
tag_file := "target/sandbox-image/tag"
tag_file_runsc := "target/sandbox-image/tag-runsc"
venv := "target/python-venv"

# List the recipes.
default:
    @just --list

# Make sure a Docker daemon answers (as root on Debian: install and start one).
docker-up:
    scripts/docker-up.sh

# Build the in-container runner as a static binary (runs in the image whatever the host glibc),
# not position-independent: no relocations to apply at each start, so each supervisor starts
# sooner and dirties about 250 KiB less.
runner:
    RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' cargo build --release --locked --target {{target}} -p sandbox-runner

# Build the sandbox image (and its base) through the Engine API, unless its inputs are unchanged.
image: docker-up runner
    mkdir -p target/sandbox-image
    cargo run --locked -q -p pool-inspect -- image build --runner {{runner}} --tag-file {{tag_file}}

# The sandbox image for gVisor: the runtime `runsc` (registered by `docker-up`) needs the
# runner readable.
image-runsc: docker-up runner
    mkdir -p target/sandbox-image
    cargo run --locked -q -p pool-inspect -- --runtime runsc image build --runner {{runner}} --tag-file {{tag_file_runsc}}

# Everything the project promises, fastest feedback first: the unit tests (no Docker), lint,
# docs, the minimum Rust version, licences and unused dependencies; then every test against
# the real daemon (never skipped), the Python package's, and the suite again under gVisor.
test: test-unit lint doc msrv
    #!/usr/bin/env bash
    set -euo pipefail
    # The audit's tools compile while the image is made (its base is mostly downloads).
    just audit-tools > target/audit-tools.log 2>&1 &
    tools=$!
    just image
    wait "$tools" || { cat target/audit-tools.log >&2; exit 1; }
    just audit
    export SANDBOX_IMAGE="$(cat {{tag_file}})"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --locked -E 'kind(test)'
    else
        cargo test --workspace --locked --tests
    fi
    just test-python
    just test-runsc

# The unit tests (pure logic, no Docker daemon needed) and the doc tests: the crates' examples
# and the README's, compiled.
test-unit:
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --locked -E 'not kind(test)'
    else
        cargo test --workspace --locked --lib --bins
    fi
    cargo test --workspace --locked --doc

# The exec, tools, hostile and pool tests again with every sandbox under gVisor (`runsc`), but
# for those that cannot pass on Debian's runsc (listed with why in .config/nextest.toml).
test-runsc: image-runsc
    #!/usr/bin/env bash
    set -euo pipefail
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "test-runsc: needs cargo-nextest (its profile runsc lists what is left out); cargo install --locked cargo-nextest" >&2
        exit 1
    fi
    SANDBOX_RUNTIME=runsc SANDBOX_IMAGE="$(cat {{tag_file_runsc}})" cargo nextest run --profile runsc --locked

# The Python package's suite: built into the virtual environment, then pytest on the real daemon.
test-python: image python-venv
    VIRTUAL_ENV="$PWD/{{venv}}" {{venv}}/bin/maturin develop --quiet --locked --manifest-path python/Cargo.toml
    SANDBOX_IMAGE="$(cat {{tag_file}})" {{venv}}/bin/python -m pytest python/tests -q

# The virtual environment the Python package is built into, with maturin and pytest.
python-venv:
    [ -x {{venv}}/bin/python ] || python3 -m venv {{venv}}
    {{venv}}/bin/python -m pip install --quiet --disable-pip-version-check 'maturin>=1.9,<2' 'pytest>=7'

# The load test alone, bigger (SOAK_CALLS per user, default 1000; `just test` runs it with 200).
soak calls="1000": image
    SANDBOX_IMAGE="$(cat {{tag_file}})" SOAK_CALLS={{calls}} cargo test --locked -p e2e-tests --test soak -- --nocapture

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The API docs of every crate, warnings (broken links) as errors.
doc:
    RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked

# The declared minimum Rust version holds for every dependency (clippy checks our own code).
msrv:
    python3 scripts/check-msrv.py

# Dependency licences and sources (cargo deny; advisories need a database this machine cannot
# fetch) and unused dependencies (cargo machete).
audit: audit-tools
    PATH="$HOME/.cargo/bin:$PATH" cargo deny --log-level error check --hide-inclusion-graph licenses bans sources
    PATH="$HOME/.cargo/bin:$PATH" cargo machete

# The audit's tools, installed from crates when missing, as debug builds (a minute instead of
# three; they only read metadata and sources).
audit-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    export PATH="$HOME/.cargo/bin:$PATH"
    for tool in cargo-deny cargo-machete; do
        command -v "$tool" >/dev/null 2>&1 || cargo install --locked --debug --quiet "$tool"
    done

# The project's main job: a scripted agent conversation in a fresh sandbox, shown step by step.
demo: image
    SANDBOX_RUNNER={{runner}} cargo run --locked -q -p pool-inspect -- demo

# Speed side by side with the seed's way and the raw Engine API (BENCH_QUICK=1 for a short run).
bench: image image-runsc python-venv
    SANDBOX_IMAGE="$(cat {{tag_file}})" SANDBOX_IMAGE_RUNSC="$(cat {{tag_file_runsc}})" cargo run --locked --release -q -p sandbox-bench --
    # The Python call's overhead over the Rust call, with a release build of the package.
    VIRTUAL_ENV="$PWD/{{venv}}" {{venv}}/bin/maturin develop --quiet --locked --release --manifest-path python/Cargo.toml
    SANDBOX_IMAGE="$(cat {{tag_file}})" {{venv}}/bin/python python/bench/overhead.py target/bench
