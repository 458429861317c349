"""deploy/: the compose file, the Kubernetes manifests and the Dockerfiles are valid, agree with
each other and with the package (console scripts, flags, ports, paths), and the helper
scripts the images carry do what they say. Offline: schemas ship with the dev extra."""

import fnmatch
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import image_size
import topology
from healthcheck import main as healthcheck
from redis_process import free_port
from seed_models import seed
from server.config import _OPTIONS, parse_config
from shared.artifact_store import KINDS, ArtifactStore
from trainer.cli import build_parser

REPO = topology.DEPLOY.parent
K8S = topology.DEPLOY / "k8s"
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
SERVER_ENV_NAMES = {env for _, env, _, _ in _OPTIONS.values()}
# Where the nginx image looks for the template it renders into its configuration.
NGINX_TEMPLATE = "/etc/nginx/templates/default.conf.template"
# Kubernetes 1.27 made the grpc probe GA; the newest schemas catch fields removed since.
K8S_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())


@pytest.fixture(scope="module")
def compose():
    return topology.compose()


@pytest.fixture(scope="module")
def k8s():
    """Every manifest of deploy/k8s, by (kind, name)."""
    documents = [
        document
        for path in sorted(K8S.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def balancer_conf(env):
    """The balancer's file as the nginx image renders it with `env`."""
    return topology.render_template(topology.BALANCER_CONF.read_text(), env)


def container(manifest, index=0):
    return manifest["spec"]["template"]["spec"]["containers"][index]


def env_of(spec):
    return {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}


def k8s_mounts(manifest, spec):
    """Claim or ConfigMap name -> mount path of a pod template's container."""
    volumes = manifest["spec"]["template"]["spec"]["volumes"]
    source = {
        v["name"]: (v.get("persistentVolumeClaim") or {}).get("claimName")
        or (v.get("configMap") or {}).get("name")
        or v["name"]
        for v in volumes
    }
    return {source[m["name"]]: m["mountPath"] for m in spec["volumeMounts"]}


# Schemas.


def test_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(topology.COMPOSE_FILE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_kubernetes_schemas(k8s, version):
    for manifest in k8s.values():
        # Strict: a misspelt or misplaced field is an error, not ignored.
        kubernetes_validate.validate(manifest, version, strict=True)


def test_kustomization_applies_every_long_running_manifest_and_the_balancer_file(k8s):
    kustomization = yaml.safe_load((topology.DEPLOY / "kustomization.yaml").read_text())
    listed = {topology.DEPLOY / path for path in kustomization["resources"]}
    trainers = {K8S / "train-pinn.yaml", K8S / "train-mamba.yaml"}  # one-off, run by hand
    assert listed == set(K8S.glob("*.yaml")) - trainers
    (generated,) = kustomization["configMapGenerator"]
    assert [topology.DEPLOY / f for f in generated["files"]] == [topology.BALANCER_CONF]
    balancer = k8s["Deployment", "balancer"]
    assert k8s_mounts(balancer, container(balancer))[generated["name"]] == NGINX_TEMPLATE


# The compose file's meaning.


def test_compose_services_run_the_package_scripts_with_flags_they_accept(compose):
    server = topology.service("server", compose)
    script, *flags = topology.argv(server)
    assert script in SCRIPTS
    assert set(topology.environment(server)) <= SERVER_ENV_NAMES
    parse_config(flags, environ=topology.environment(server))  # SystemExit on a bad value

    trainer = topology.service("trainer", compose)
    script, *arguments = topology.argv(trainer)
    assert script == "trainer"
    assert script in SCRIPTS
    assert build_parser().parse_args(arguments).command == "train"


def test_compose_ports_volumes_and_names_line_up(compose):
    services = compose["services"]
    server, trainer = services["server"], services["trainer"]
    config = parse_config(topology.argv(server)[1:], environ=topology.environment(server))
    # The models volume is where the server reads and the trainer writes.
    assert topology.mounts(server)["models"] == str(config.models_dir)
    arguments = build_parser().parse_args(topology.argv(trainer)[1:])
    assert topology.mounts(trainer)["models"] == str(arguments.output)
    assert "models" in compose["volumes"]
    # Redis is the redis service, on the port its command leaves as the default.
    redis_url = urlsplit(config.redis_url)
    assert (redis_url.hostname, redis_url.port) == ("redis", 6379)
    assert "--port" not in topology.argv(services["redis"])
    # The balancer renders deploy's nginx file; its upstream is the server service's port.
    balancer = services["balancer"]
    sources = {target: source for source, target in topology.mounts(balancer).items()}
    assert (topology.DEPLOY / sources[NGINX_TEMPLATE]).resolve() == topology.BALANCER_CONF
    conf = balancer_conf(topology.environment(balancer))
    assert topology.upstream_addresses(conf) == [f"server:{config.port}"]
    assert "grpc_pass grpc://pricing_servers;" in conf
    (published,) = balancer["ports"]
    assert published.split(":")[-1] == str(topology.listen_port(conf))


def test_compose_balancer_reresolves_the_replicas_which_needs_nginx_1_27_3(compose):
    image = compose["services"]["balancer"]["image"]
    version = tuple(map(int, re.match(r"nginx:(\d+)\.(\d+)\.(\d+)", image).groups()))
    assert version >= (1, 27, 3)
    conf = balancer_conf({})
    assert re.search(r"^\s*server \$\{PRICING_UPSTREAM\} resolve\b", conf, re.M)
    assert re.search(r"^\s*zone \w+ \d+k;", conf, re.M)


def test_compose_start_order_waits_for_health(compose):
    services = compose["services"]
    dockerfiles = {
        name: (topology.DEPLOY / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve()
        for name, spec in services.items()
        if "build" in spec
    }
    for name, spec in services.items():
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                has_check = "healthcheck" in services[dependency] or "HEALTHCHECK" in (
                    dockerfiles[dependency].read_text()
                )
                assert has_check, f"{dependency} has no health check for {name} to wait on"
    assert services["server"]["deploy"]["replicas"] == 2
    assert all("limits" in s["deploy"]["resources"] for s in services.values())


# The Kubernetes manifests' meaning, and their agreement with compose.


def test_k8s_server_runs_as_the_compose_server_with_probes_on_its_grpc_port(compose, k8s):
    server = topology.service("server", compose)
    deployment = k8s["Deployment", "server"]
    spec = container(deployment)
    assert spec["image"] == server["image"]
    assert spec["command"] == topology.argv(server)
    assert env_of(spec) == topology.environment(server)
    port = int(topology.environment(server)["PRICING_PORT"])
    assert {p["name"]: p["containerPort"] for p in spec["ports"]}["grpc"] == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[probe]["grpc"]["port"] == port, probe
    assert k8s_mounts(deployment, spec)["models"] == env_of(spec)["PRICING_MODELS_DIR"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_k8s_balancer_upstream_is_the_headless_service_of_the_server_pods(compose, k8s):
    service = k8s["Service", "server"]
    assert service["spec"]["clusterIP"] == "None"
    labels = k8s["Deployment", "server"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    port = int(env_of(container(k8s["Deployment", "server"]))["PRICING_PORT"])
    assert service["spec"]["ports"][0]["port"] == port
    balancer = container(k8s["Deployment", "balancer"])
    assert balancer["image"] == compose["services"]["balancer"]["image"]
    upstream = env_of(balancer)["PRICING_UPSTREAM"]
    assert upstream == f"server.$(POD_NAMESPACE).svc.cluster.local:{port}"
    assert topology.upstream_addresses(balancer_conf(env_of(balancer))) == [upstream]


def test_k8s_autoscaler_scales_the_server_on_its_cpu_request(k8s):
    autoscaler = k8s["HorizontalPodAutoscaler", "server"]["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == "server"
    assert autoscaler["minReplicas"] >= 2
    assert container(k8s["Deployment", "server"])["resources"]["requests"]["cpu"]


def test_k8s_redis_and_models_volume(compose, k8s):
    redis = container(k8s["Deployment", "redis"])
    assert redis["args"] == topology.argv(compose["services"]["redis"])
    assert redis["image"] == compose["services"]["redis"]["image"]
    assert k8s["PersistentVolumeClaim", "models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    seeder = k8s["Job", "models-seed"]
    script, source, target = container(seeder)["command"]
    assert script == "pricing-seed-models"
    assert source == env_of(container(k8s["Deployment", "server"]))["PRICING_MODELS_DIR"]
    assert k8s_mounts(seeder, container(seeder))["models"] == target


def test_k8s_pinn_job_runs_the_trainer_into_the_models_volume(k8s):
    job = k8s["Job", "train-pinn"]
    spec = container(job)
    assert spec["command"] == ["trainer"]
    arguments = build_parser().parse_args(spec["args"])
    assert (arguments.model, str(arguments.output)) == ("pinn", k8s_mounts(job, spec)["models"])


def test_k8s_mamba_job_trains_one_symbol_per_index(k8s, tmp_path):
    job = k8s["Job", "train-mamba"]
    spec = container(job)
    symbols = env_of(spec)["SYMBOLS"].split(",")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == len(symbols) == job["spec"]["parallelism"]
    # Run the pod's shell command with a `trainer` that prints the arguments it was given.
    fake = tmp_path / "trainer"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    mounts = k8s_mounts(job, spec)
    for index, symbol in enumerate(symbols):
        env = {**os.environ, **env_of(spec), "JOB_COMPLETION_INDEX": str(index),
               "PATH": f"{tmp_path}:{os.environ['PATH']}"}  # fmt: skip
        printed = subprocess.run(
            spec["command"] + spec["args"], env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        arguments = build_parser().parse_args(printed)
        assert arguments.model == "mamba"
        assert arguments.symbols in (symbol, [symbol])
        assert str(arguments.output) == mounts["models"]
        assert str(arguments.data) == mounts["data"]


# The Dockerfiles and .dockerignore.


def instructions(dockerfile):
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (topology.DEPLOY / dockerfile).read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def final_stage(dockerfile):
    steps = instructions(dockerfile)
    last = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last:]


@pytest.mark.parametrize("dockerfile", ["server.Dockerfile", "trainer.Dockerfile"])
def test_images_are_pinned_multi_stage_and_run_as_a_user_with_the_models(dockerfile, compose):
    bases = [args.split()[0] for op, args in instructions(dockerfile) if op == "FROM"]
    assert len(bases) == 2 and len(set(bases)) == 1  # build stage, then a clean runtime stage
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", bases[0])
    runtime = dict(final_stage(dockerfile))
    assert runtime["USER"] not in {"root", "0"}
    models = topology.mounts(compose["services"]["server"])["models"]
    assert f"--chown={runtime['USER']}:{runtime['USER']} models {models}" in [
        args for op, args in final_stage(dockerfile) if op == "COPY"
    ]


def test_server_image_installs_only_the_server_extra_and_checks_health():
    installs = [
        a for op, a in instructions("server.Dockerfile") if op == "RUN" and "pip install" in a
    ]
    assert [shlex.split(a)[-1] for a in installs] == [".[server]"]
    copied = [a.split()[-2] for op, a in instructions("server.Dockerfile") if op == "COPY"]
    assert "trainer" not in copied
    runtime = final_stage("server.Dockerfile")
    copies = [args.split()[-2:] for op, args in runtime if op == "COPY"]
    assert ["deploy/healthcheck.py", "/usr/local/bin/pricing-healthcheck"] in copies
    assert dict(runtime)["HEALTHCHECK"].endswith('CMD ["pricing-healthcheck"]')
    assert dict(runtime)["CMD"] == '["pricing-server"]'


def test_trainer_image_installs_the_trainer_extra_with_trainer_as_entrypoint():
    installs = [
        a for op, a in instructions("trainer.Dockerfile") if op == "RUN" and "pip install" in a
    ]
    assert [shlex.split(a)[-1] for a in installs] == [".[trainer]"]
    assert dict(final_stage("trainer.Dockerfile"))["ENTRYPOINT"] == '["trainer"]'


def dockerignored(path):
    """Whether the build context leaves `path` (relative to the repo) out: the last matching
    pattern of .dockerignore decides, a pattern naming a folder covers what is inside."""
    patterns = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").replace("**/", "*")
        if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_what_the_images_copy_and_leaves_the_rest_out():
    copied = {
        args.split()[-2]
        for dockerfile in ("server.Dockerfile", "trainer.Dockerfile")
        for op, args in instructions(dockerfile)
        if op == "COPY" and "--from" not in args
    } | {"pyproject.toml", "README.md"}
    for path in copied:
        assert not dockerignored(path), path
    for path in (".venv", ".git", "data", "tests", "server/__pycache__/main.cpython-311.pyc",
                 "models/pinn/default/.lock", "deploy/docker-compose.yml"):  # fmt: skip
        assert dockerignored(path), path


# The scripts the images carry.


def test_healthcheck_says_serving_for_a_warm_server_only(server):
    assert healthcheck([server.address]) == 0
    assert healthcheck([f"127.0.0.1:{free_port()}"]) == 1


def test_seeding_copies_promoted_models_once_and_never_replaces_a_promotion(tmp_path):
    source = ArtifactStore(REPO / "models")
    target = ArtifactStore(tmp_path / "models")
    done = seed(source.root, target.root)
    promoted = {(kind, name) for kind in KINDS for name in source.promoted(kind)}
    assert len(done) == len(promoted) and all(": seeded v" in line for line in done)
    for kind, name in promoted:
        copy = target.load(kind, name)  # verified against its sha256s
        assert copy.version == source.current_version(kind, name)
        assert copy.files == source.load(kind, name).files
    # A model the trainer promoted since is left alone; running again changes nothing.
    newer = target.write("pinn", "default", dict(target.load("pinn", "default").files), {})
    target.promote("pinn", "default", newer.version)
    assert all("kept" in line for line in seed(source.root, target.root))
    assert target.current_version("pinn", "default") == newer.version
    assert not list(target.root.rglob(".seed-*"))


def test_image_size_lists_the_server_closure_without_tensorflow():
    server, trainer = image_size.sizes("server"), image_size.sizes("trainer")
    assert {"onnxruntime", "grpcio", "pip"} <= server.keys()
    assert not server.keys() & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"}
    assert sum(trainer.values()) > 2 * sum(server.values()) > 0
