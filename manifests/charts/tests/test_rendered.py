"""Assertions on what the routeguard chart renders, for every values file of the CI matrix.

Run by scripts/chart-test (`.venv/bin/python -m pytest manifests/charts/tests`). Each test renders
the chart itself with the real helm (HELM, default .tools/bin/helm), so it can also be run alone.
If the routeguard binary has been built (ROUTEGUARD_BIN, default target/debug/routeguard), the
rendered policy and the helm test's broken VirtualService are also fed to `routeguard check`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = Path(os.environ.get("ROUTEGUARD_CHART", REPO / "manifests" / "charts" / "routeguard"))
CI_DIR = CHART / "ci"
HELM = os.environ.get("HELM", str(REPO / ".tools" / "bin" / "helm"))
BIN = Path(os.environ.get("ROUTEGUARD_BIN", REPO / "target" / "debug" / "routeguard"))
RELEASE = "routeguard"
NAMESPACE = "routeguard"
KUBE_VERSION = "1.35.0"

# What each values file of the matrix must produce. A new file in ci/ must be added here
# (test_every_values_file_has_expectations), so that nothing renders untested.
DEFAULTS = {
    "url": False,
    "tls": "self",
    "secret": "routeguard-tls",
    "ca_bundle": None,
    "mutating_failure": "Fail",
    "validating_failure": "Fail",
    "timeout": 5,
    "replicas": 2,
    "hard_anti_affinity": False,
    "priority": None,
    "opt_out": "routeguard.io/ignore",
    "extra_excluded": [],
    "watch": [],
    "generator": True,
    "lease": "routeguard-generator",
    "resync_interval": "5m",
    "audit_interval": "5m",
    "policy_reports": True,
    "issuer": "routeguard-selfsigned",
    "service_port": 443,
    "admin_port": 8080,
    "https_port": 8443,
    "host_network": False,
    "service_monitor": False,
}
PLACEHOLDER_CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClRFU1QKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
EXPECT = {
    "default-values.yaml": {},
    "self-values.yaml": {"secret": "routeguard-serving", "lease": "routeguard-leader"},
    "cert-manager-values.yaml": {"tls": "certManager"},
    "cert-manager-issuer-values.yaml": {"tls": "certManager", "issuer": ("ClusterIssuer", "company-ca")},
    "secret-values.yaml": {"tls": "secret", "secret": "routeguard-webhook-tls", "ca_bundle": PLACEHOLDER_CA},
    "url-values.yaml": {"url": "https://host.docker.internal:8443", "ca_bundle": PLACEHOLDER_CA},
    "selectors-values.yaml": {
        "opt_out": "example.com/skip-routeguard",
        "extra_excluded": ["istio-system", "monitoring"],
        "watch": ["shop", "payments"],
    },
    "failure-ignore-values.yaml": {"mutating_failure": "Ignore", "timeout": 10},
    "failure-open-values.yaml": {"mutating_failure": "Ignore", "validating_failure": "Ignore"},
    "production-values.yaml": {
        "replicas": 3,
        "hard_anti_affinity": True,
        "priority": "routeguard-critical",
        "generator": False,
        "resync_interval": "30m",
        "audit_interval": "10m",
        "policy_reports": False,
        "service_monitor": True,
    },
    "host-network-values.yaml": {
        "replicas": 1,
        "host_network": True,
        "service_port": 8443,
        "https_port": 9443,
        "admin_port": 9080,
    },
}
VALUES_FILES = sorted(EXPECT)
IN_CLUSTER = [f for f in VALUES_FILES if not EXPECT[f].get("url")]


def expect(values_file: str) -> dict:
    return {**DEFAULTS, **EXPECT[values_file]}


# --- rendering ----------------------------------------------------------------------------


def helm_template(*args: str, namespace: str = NAMESPACE) -> subprocess.CompletedProcess:
    cmd = [HELM, "template", RELEASE, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@functools.lru_cache(maxsize=None)
def render(values_file: str | None = None, sets: tuple[str, ...] = (), namespace: str = NAMESPACE) -> tuple:
    args = []
    if values_file:
        args += ["-f", str(CI_DIR / values_file)]
    for s in sets:
        args += ["--set", s]
    proc = helm_template(*args, namespace=namespace)
    assert proc.returncode == 0, f"helm template {args} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def render_fails(*sets: str) -> str:
    args = [a for s in sets for a in ("--set", s)]
    proc = helm_template(*args)
    assert proc.returncode != 0, f"helm template {args} should have failed but rendered"
    return proc.stderr


def find(docs, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(docs, kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_hook(doc) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def webhook(docs, kind: str) -> dict:
    config = one(docs, kind, RELEASE)
    assert len(config["webhooks"]) == 1, config["webhooks"]
    return config["webhooks"][0]


def container(docs) -> dict:
    dep = one(docs, "Deployment", RELEASE, NAMESPACE)
    [c] = dep["spec"]["template"]["spec"]["containers"]
    return c


def args_of(docs) -> dict[str, str]:
    c = container(docs)
    assert c["args"][0] == "serve"
    out = {}
    for a in c["args"][1:]:
        assert a.startswith("--") and "=" in a, f"argument {a!r} is not --flag=value"
        k, v = a[2:].split("=", 1)
        assert k not in out, f"--{k} given twice"
        out[k] = v
    return out


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", duration)
    assert m, duration
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


# --- the matrix itself --------------------------------------------------------------------


def test_every_values_file_has_expectations():
    on_disk = sorted(p.name for p in CI_DIR.glob("*.yaml"))
    assert on_disk == VALUES_FILES, "ci/ and EXPECT differ: add expectations for new values files"


def test_values_schema_is_strict():
    schema = json.loads((CHART / "values.schema.json").read_text())
    passthrough = {"global"}  # set by a parent chart

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path or '/'} allows unknown keys"
            for key, child in node.get("properties", {}).items():
                if key not in passthrough:
                    walk(child, f"{path}/{key}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{path}/{key}")

    walk(schema, "")


@pytest.mark.parametrize(
    "sets, message",
    [
        (("unknownKey=1",), "additional properties 'unknownKey' not allowed"),
        (("webhook.timeoutSecond=5",), "timeoutSecond"),
        (("webhook.mutating.failurePolicy=Open",), "failurePolicy"),
        (("webhook.timeoutSeconds=31",), "timeoutSeconds"),
        (("tls.mode=selfsigned",), "mode"),
        (("policy.missingSubset=off",), "missingSubset"),
        (("policy.weights=half",), "weights"),
        (("policy.enforcement=block",), "enforcement"),
        (("tls.mode=secret", f"tls.caBundle={PLACEHOLDER_CA}"), "tls.secretName"),
        (("tls.mode=secret", "tls.secretName=x"), "tls.caBundle"),
        (("terminationGracePeriodSeconds=25",), "terminationGracePeriodSeconds"),
        (("shutdownDelaySeconds=30",), "terminationGracePeriodSeconds"),
        (("webhook.url=http://example.com:8443",), "/webhook/url"),
        (("serviceAccount.create=false",), "serviceAccount.name"),
        (("audit.interval=five minutes",), "/audit/interval"),
        (("generator.resyncInterval=60",), "/generator/resyncInterval"),
        (("audit.policyReports.enabled=maybe",), "/audit/policyReports/enabled"),
    ],
)
def test_bad_values_are_refused(sets, message):
    assert message in render_fails(*sets)


# --- webhook configurations -----------------------------------------------------------------


def rule_set(hook) -> set[tuple[str, str, str]]:
    out = set()
    for rule in hook["rules"]:
        assert rule.get("scope") == "Namespaced", rule
        assert rule["apiVersions"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for op in rule["operations"]:
                    assert "*" not in (group, resource, op), rule
                    out.add((group, resource, op))
    return out


MUTATING_RULES = {("apps", "deployments", "CREATE"), ("apps", "deployments", "UPDATE")}
VALIDATING_RULES = {
    ("networking.istio.io", "virtualservices", "CREATE"),
    ("networking.istio.io", "virtualservices", "UPDATE"),
    ("networking.istio.io", "destinationrules", "CREATE"),
    ("networking.istio.io", "destinationrules", "UPDATE"),
    ("gateway.networking.k8s.io", "httproutes", "CREATE"),
    ("gateway.networking.k8s.io", "httproutes", "UPDATE"),
    ("networking.istio.io", "destinationrules", "DELETE"),
    ("apps", "deployments", "DELETE"),
    ("", "services", "DELETE"),
}


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_webhook_rules_and_settings(values_file):
    docs, e = render(values_file), expect(values_file)
    mutating = webhook(docs, "MutatingWebhookConfiguration")
    validating = webhook(docs, "ValidatingWebhookConfiguration")
    assert mutating["name"] == "mutate.routeguard.io"
    assert validating["name"] == "validate.routeguard.io"
    assert rule_set(mutating) == MUTATING_RULES
    assert rule_set(validating) == VALIDATING_RULES
    for hook in (mutating, validating):
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["timeoutSeconds"] == e["timeout"]
    assert mutating["reinvocationPolicy"] == "IfNeeded"
    assert "reinvocationPolicy" not in validating
    assert mutating["failurePolicy"] == e["mutating_failure"]
    assert validating["failurePolicy"] == e["validating_failure"]


def expressions(selector) -> list[dict]:
    return selector.get("matchExpressions") or []


def excluded_names(selector) -> set[str]:
    out = set()
    for ex in expressions(selector):
        if ex["key"] == "kubernetes.io/metadata.name" and ex["operator"] == "NotIn":
            out |= set(ex["values"])
    return out


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_selectors_always_exclude_system_and_own_namespace(values_file):
    docs, e = render(values_file), expect(values_file)
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        hook = webhook(docs, kind)
        ns = hook["namespaceSelector"]
        assert {"kube-system", "kube-node-lease", NAMESPACE} | set(e["extra_excluded"]) <= excluded_names(ns)
        assert {"key": "routeguard.io/ignore", "operator": "DoesNotExist"} in expressions(ns)
        watched = [x for x in expressions(ns) if x["key"] == "kubernetes.io/metadata.name" and x["operator"] == "In"]
        assert [x["values"] for x in watched] == ([e["watch"]] if e["watch"] else [])
        assert {"key": e["opt_out"], "operator": "DoesNotExist"} in expressions(hook["objectSelector"])


def test_release_namespace_is_excluded_wherever_installed():
    docs = render(namespace="platform-webhooks")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        names = excluded_names(webhook(docs, kind)["namespaceSelector"])
        assert {"kube-system", "kube-node-lease", "platform-webhooks"} <= names
        assert NAMESPACE not in names


def test_custom_selectors_are_added_not_substituted():
    docs = render("selectors-values.yaml")
    hook = webhook(docs, "ValidatingWebhookConfiguration")
    assert hook["namespaceSelector"]["matchLabels"] == {"istio-injection": "enabled"}
    assert {"key": "environment", "operator": "In", "values": ["staging", "production"]} in expressions(
        hook["namespaceSelector"]
    )
    assert hook["objectSelector"]["matchLabels"] == {"team": "checkout"}
    assert {"key": "example.com/legacy", "operator": "DoesNotExist"} in expressions(hook["objectSelector"])
    assert hook["matchConditions"][0]["name"] == "not-the-rollout-controller"


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_client_config_and_ca_bundle(values_file):
    docs, e = render(values_file), expect(values_file)
    for kind, path in (("MutatingWebhookConfiguration", "/mutate"), ("ValidatingWebhookConfiguration", "/validate")):
        config = one(docs, kind, RELEASE)
        cc = config["webhooks"][0]["clientConfig"]
        annotations = config["metadata"].get("annotations") or {}
        if e["url"]:
            assert "service" not in cc, "URL mode must not reference a Service"
            assert cc["url"] == e["url"] + path
        else:
            assert "url" not in cc
            assert cc["service"] == {"name": RELEASE, "namespace": NAMESPACE, "path": path, "port": e["service_port"]}
        if e["ca_bundle"]:
            assert cc["caBundle"] == e["ca_bundle"]
        else:
            # self: routeguard patches it in; certManager: cainjector does.
            assert "caBundle" not in cc
        if e["tls"] == "certManager" and not e["url"]:
            assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/routeguard-serving"
        else:
            assert "cert-manager.io/inject-ca-from" not in annotations


def test_url_mode_installs_nothing_that_runs():
    docs = render("url-values.yaml")
    kinds = sorted({d["kind"] for d in docs if not is_hook(d)})
    assert kinds == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


# --- the Deployment ------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_deployment_security(values_file):
    docs = render(values_file)
    pod = one(docs, "Deployment", RELEASE)["spec"]["template"]["spec"]
    c = container(docs)
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc.get("privileged", False) is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostPID" not in pod and "hostIPC" not in pod
    assert pod.get("hostNetwork", False) is expect(values_file)["host_network"]


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_resources_have_requests_and_no_cpu_limit(values_file):
    res = container(render(values_file))["resources"]
    assert {"cpu", "memory"} <= set(res["requests"])
    assert "cpu" not in (res.get("limits") or {})
    assert "memory" in res["limits"]


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_probes_on_admin_port(values_file):
    docs, e = render(values_file), expect(values_file)
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": e["https_port"], "admin": e["admin_port"]}
    args = args_of(docs)
    assert args["addr"] == f"0.0.0.0:{e['https_port']}"
    assert args["admin-addr"] == f"0.0.0.0:{e['admin_port']}"
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == e["admin_port"], probe
        assert get.get("scheme", "HTTP") == "HTTP"
        paths[probe] = get["path"]
    assert paths == {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_no_sidecar_and_graceful_shutdown(values_file):
    docs = render(values_file)
    template = one(docs, "Deployment", RELEASE)["spec"]["template"]
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    args = args_of(docs)
    delay, drain = seconds(args["shutdown-delay"]), seconds(args["drain-timeout"])
    assert template["spec"]["terminationGracePeriodSeconds"] > delay + drain


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_replicas_pdb_and_anti_affinity(values_file):
    docs, e = render(values_file), expect(values_file)
    dep = one(docs, "Deployment", RELEASE)
    assert dep["spec"]["replicas"] == e["replicas"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget", RELEASE)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    if e["hard_anti_affinity"]:
        [term] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    else:
        [pref] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        term = pref["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert dep["spec"]["template"]["spec"].get("priorityClassName") == e["priority"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_default_image_is_the_chart_app_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container(render())["image"] == f"ghcr.io/routeguard/routeguard:{chart['appVersion']}"
    assert chart["appVersion"] == "0.1.0"
    digest = "sha256:" + "0123456789abcdef" * 4
    assert container(render("production-values.yaml"))["image"] == f"registry.example.com/platform/routeguard@{digest}"
    assert container(render(sets=("image.tag=0.2.0",)))["image"] == "ghcr.io/routeguard/routeguard:0.2.0"


def mounted_file(docs, path: str) -> tuple[dict, str]:
    """The volume a file path of the container lives on, and the file's name in it."""
    c = container(docs)
    pod = one(docs, "Deployment", RELEASE)["spec"]["template"]["spec"]
    for m in c["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            assert "subPath" not in m, "a subPath mount never sees updates"
            [volume] = [v for v in pod["volumes"] if v["name"] == m["name"]]
            return volume, path[len(m["mountPath"].rstrip("/")) + 1 :]
    raise AssertionError(f"{path} is on no mounted volume")


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_policy_configmap_is_mounted_and_passed(values_file):
    docs = render(values_file)
    volume, key = mounted_file(docs, args_of(docs)["policy"])
    cm = one(docs, "ConfigMap", volume["configMap"]["name"], NAMESPACE)
    policy = yaml.safe_load(cm["data"][key])
    values = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]
    overrides = (yaml.safe_load((CI_DIR / values_file).read_text()) or {}).get("policy", {})
    assert policy == {**values, **overrides}
    # A changed policy rolls the pods.
    dep = one(docs, "Deployment", RELEASE)
    changed = one(render(values_file, ("policy.clusterDomain=corp.example",)), "Deployment", RELEASE)
    key = "checksum/policy"
    assert dep["spec"]["template"]["metadata"]["annotations"][key] != changed["spec"]["template"]["metadata"]["annotations"][key]


def test_default_policy_exempts_namespace_deletion_and_garbage_collection():
    # Without these, deleting a namespace or an owner would be refused (RG303) while routes remain.
    docs = render()
    policy = yaml.safe_load(one(docs, "ConfigMap", f"{RELEASE}-policy")["data"]["policy.yaml"])
    assert set(policy["exemptUsers"]) >= {
        "system:serviceaccount:kube-system:namespace-controller",
        "system:serviceaccount:kube-system:generic-garbage-collector",
    }


@pytest.mark.skipif(not BIN.is_file(), reason=f"{BIN} not built (cargo build)")
@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_rendered_policy_is_accepted_by_routeguard(values_file, tmp_path):
    docs = render(values_file)
    cm = one(docs, "ConfigMap", f"{RELEASE}-policy")
    (tmp_path / "policy.yaml").write_text(cm["data"]["policy.yaml"])
    (tmp_path / "empty.yaml").write_text("")
    proc = subprocess.run(
        [str(BIN), "check", "--policy", str(tmp_path / "policy.yaml"), str(tmp_path / "empty.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_tls_mode_arguments_and_volumes(values_file):
    docs, e = render(values_file), expect(values_file)
    args = args_of(docs)
    assert args["source"] == "cluster"
    assert args["service-name"] == RELEASE and args["service-namespace"] == NAMESPACE
    if e["tls"] == "self":
        assert args["tls-secret"] == e["secret"]
        assert args["mutating-webhook"] == RELEASE and args["validating-webhook"] == RELEASE
        assert "tls-cert" not in args and "tls-key" not in args
        volume, _ = mounted_file(docs, args["cert-dir"] + "/x")
        assert "emptyDir" in volume
        assert not find(docs, "Certificate") and not find(docs, "Issuer")
    else:
        assert "tls-secret" not in args
        cert, key = mounted_file(docs, args["tls-cert"]), mounted_file(docs, args["tls-key"])
        assert cert[0] == key[0] and (cert[1], key[1]) == ("tls.crt", "tls.key")
        assert cert[0]["secret"]["secretName"] == e["secret"]
    if e["tls"] == "certManager":
        certificate = one(docs, "Certificate", "routeguard-serving", NAMESPACE)
        assert certificate["apiVersion"] == "cert-manager.io/v1"
        assert certificate["spec"]["secretName"] == e["secret"]
        svc = RELEASE
        assert certificate["spec"]["dnsNames"] == [svc, f"{svc}.{NAMESPACE}", f"{svc}.{NAMESPACE}.svc"]
        ref = certificate["spec"]["issuerRef"]
        if isinstance(e["issuer"], tuple):
            assert (ref["kind"], ref["name"]) == e["issuer"]
            assert not find(docs, "Issuer")
        else:
            issuer = one(docs, "Issuer", e["issuer"], NAMESPACE)
            assert issuer["spec"] == {"selfSigned": {}}
            assert (ref["kind"], ref["name"], ref["group"]) == ("Issuer", e["issuer"], "cert-manager.io")
    # The Lease elects the generator's and the audit's leader: always there.
    assert args["generate"] == ("true" if e["generator"] else "false")
    assert args["leader-election-lease"] == e["lease"]
    assert args["resync-interval"] == e["resync_interval"]
    assert args["audit-interval"] == e["audit_interval"]
    assert args["policy-reports"] == ("true" if e["policy_reports"] else "false")
    if e["watch"]:
        assert args["watch-namespaces"] == ",".join(e["watch"])
    else:
        assert "watch-namespaces" not in args


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_service_reaches_the_https_port(values_file):
    docs, e = render(values_file), expect(values_file)
    svc = one(docs, "Service", RELEASE, NAMESPACE)
    pod_labels = one(docs, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [https] = [p for p in svc["spec"]["ports"] if p["name"] == "https"]
    assert https["port"] == e["service_port"] and https["targetPort"] == "https"
    monitors = find(docs, "ServiceMonitor")
    assert bool(monitors) is e["service_monitor"]
    for m in monitors:
        assert m["spec"]["endpoints"][0]["port"] == "admin"
        assert m["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


# --- RBAC ----------------------------------------------------------------------------------


def permissions(docs) -> dict[tuple[str, str, str, str], tuple[frozenset, tuple]]:
    """(scope, group, resource, verb) -> resourceNames, for every rule bound to routeguard's SA.

    scope is "cluster" for a ClusterRole bound by a ClusterRoleBinding, else the namespace.
    """
    sa = {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if not is_hook(d)}
    out: dict = {}
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding") or is_hook(b):
            continue
        if sa not in b["subjects"]:
            continue
        ref = b["roleRef"]
        scope = "cluster" if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
        role_ns = None if ref["kind"] == "ClusterRole" else b["metadata"]["namespace"]
        role = roles[(ref["kind"], role_ns, ref["name"])]
        for rule in role["rules"]:
            names = tuple(sorted(rule.get("resourceNames", ())))
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        key = (scope, g, r, v)
                        assert "*" not in (g, r, v), f"wildcard in {role['metadata']['name']}: {rule}"
                        # Two rules for one verb: the one without names wins.
                        prev = out.get(key)
                        out[key] = () if prev == () or not names else tuple(sorted(set(names) | set(prev or ())))
    return out


def expected_permissions(e) -> dict:
    read = {"get", "list", "watch"}
    indexed = [
        ("apps", "deployments"),
        ("", "services"),
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "destinationrules"),
        ("networking.istio.io", "serviceentries"),
        ("networking.istio.io", "gateways"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "referencegrants"),
        ("gateway.networking.k8s.io", "gateways"),
    ]
    out = {}
    for scope in e["watch"] or ["cluster"]:
        for g, r in indexed:
            for v in read:
                out[(scope, g, r, v)] = ()
        if e["generator"]:
            for g, r in [("", "services"), ("networking.istio.io", "destinationrules")]:
                for v in ("create", "update", "patch", "delete"):
                    out[(scope, g, r, v)] = ()
        for v in ("create", "patch"):
            out[(scope, "events.k8s.io", "events", v)] = ()
        if e["policy_reports"]:
            for v in ("get", "list", "watch", "create", "update", "patch", "delete"):
                out[(scope, "wgpolicyk8s.io", "policyreports", v)] = ()
    # Namespaces are cluster-scoped: their enforcement label is read cluster-wide, whatever is watched.
    for v in read:
        out[("cluster", "", "namespaces", v)] = ()
    for r in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        for v in ("get", "list", "watch", "patch"):
            out[("cluster", "admissionregistration.k8s.io", r, v)] = (RELEASE,)
    own = NAMESPACE
    for v in ("get", "update", "patch"):
        out[(own, "coordination.k8s.io", "leases", v)] = (e["lease"],)
    out[(own, "coordination.k8s.io", "leases", "create")] = ()  # create takes no resourceNames
    if e["tls"] == "self":
        for v in ("get", "update", "patch"):
            out[(own, "", "secrets", v)] = (e["secret"],)
        out[(own, "", "secrets", "create")] = ()  # create takes no resourceNames
    return out


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_rbac_is_exactly_least_privilege(values_file):
    docs, e = render(values_file), expect(values_file)
    got, want = permissions(docs), expected_permissions(e)
    extra = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    assert not extra, f"more than routeguard needs: {extra}"
    assert not missing, f"routeguard would lack: {missing}"
    for key in want:
        assert got[key] == want[key], f"{key}: resourceNames {got[key]} != {want[key]}"
    # Nothing cluster-wide on Secrets, nothing that escalates.
    assert not [k for k in got if k[2] == "secrets" and k[0] != NAMESPACE]
    assert not [k for k in got if k[3] in ("escalate", "bind", "impersonate", "deletecollection")]


def test_rbac_with_watch_namespaces_uses_roles():
    docs = render("selectors-values.yaml")
    cluster_role = one(docs, "ClusterRole", RELEASE)
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == {"namespaces", "mutatingwebhookconfigurations", "validatingwebhookconfigurations"}
    for ns in ("shop", "payments"):
        one(docs, "Role", RELEASE, ns)
        one(docs, "RoleBinding", RELEASE, ns)


# --- helm test -------------------------------------------------------------------------------


def crd_schema(path: str, version: str) -> dict:
    crd = yaml.safe_load((REPO / path).read_text())
    [v] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("values_file", IN_CLUSTER)
def test_helm_test_dry_runs_a_broken_virtual_service(values_file):
    docs = render(values_file)
    pod = one(docs, "Pod", f"{RELEASE}-test", NAMESPACE)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [c] = pod["spec"]["containers"]
    script = "\n".join(c["command"] + c["args"])
    assert "kubectl create --dry-run=server" in script
    assert 'admission webhook "validate.routeguard.io" denied the request' in script
    env = {v["name"]: v.get("value") for v in c["env"]}
    test_ns = env["NAMESPACE"]
    assert env["NAMESPACE_SKIPPED"] == "false", f"test namespace {test_ns} is not admitted by the webhooks"
    e = expect(values_file)
    assert test_ns not in {"kube-system", "kube-node-lease", NAMESPACE, *e["extra_excluded"]}
    assert not e["watch"] or test_ns in e["watch"]
    vs = yaml.safe_load(env["VIRTUAL_SERVICE"])
    route = yaml.safe_load(env["HTTP_ROUTE"])
    # Valid for the CRDs (so the API server and Istio accept them), broken for routeguard.
    jsonschema.validate(vs["spec"], crd_schema("crds/istio/virtualservices.yaml", "v1")["properties"]["spec"])
    jsonschema.validate(
        route["spec"], crd_schema("crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml", "v1")["properties"]["spec"]
    )
    assert sum(d["weight"] for d in vs["spec"]["http"][0]["route"]) != 100
    # The test's ServiceAccount may create (dry run) these in the test namespace, nothing more.
    sa = pod["spec"]["serviceAccountName"]
    binding = one(docs, "RoleBinding", sa, test_ns)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    role = one(docs, "Role", binding["roleRef"]["name"], test_ns)
    assert {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]} == {
        ("networking.istio.io", "virtualservices", "create"),
        ("gateway.networking.k8s.io", "httproutes", "create"),
    }
    for d in (binding, role, one(docs, "ServiceAccount", sa, NAMESPACE)):
        assert d["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_helm_test_notices_an_excluded_test_namespace():
    pod = one(render(sets=("test.namespace=routeguard",)), "Pod", f"{RELEASE}-test")
    env = {v["name"]: v.get("value") for v in pod["spec"]["containers"][0]["env"]}
    assert env["NAMESPACE_SKIPPED"] == "true"


@pytest.mark.skipif(not BIN.is_file(), reason=f"{BIN} not built (cargo build)")
def test_routeguard_refuses_the_helm_test_objects(tmp_path):
    pod = one(render(), "Pod", f"{RELEASE}-test")
    env = {v["name"]: v.get("value") for v in pod["spec"]["containers"][0]["env"]}
    for name, codes in (("VIRTUAL_SERVICE", ("RG101", "RG103", "RG104")), ("HTTP_ROUTE", ("RG101",))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(env[name])
        proc = subprocess.run([str(BIN), "check", "-n", "default", str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        for code in codes:
            assert f"error {code} " in proc.stdout, proc.stdout
