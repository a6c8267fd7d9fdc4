"""Checks for ray_cluster.yaml: Ray accepts it, and it keeps to the cluster's security policy.

No cloud account, network or Ray cluster is needed: Ray's prepare_config only merges the file with the
provider's defaults.yaml and validate_config only checks the JSON schema (neither imports boto3).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "ray_cluster.yaml"
WORLD = {"0.0.0.0/0", "::/0"}
AUTH_TOKEN = re.compile(r"(?<![\w-])RAY_AUTH_MODE=token(?![\w-])")
RAY_START = re.compile(r"\bray start\b")


def check_cluster_policy(config: dict[str, Any]) -> list[str]:
    """Returns the ways `config` breaks the security policy (empty when it keeps to it)."""
    violations: list[str] = []
    head_cmds: list[str] = list(config.get("head_start_ray_commands") or [])
    worker_cmds: list[str] = list(config.get("worker_start_ray_commands") or [])

    # The dashboard (and the jobs API behind it) only on the head's loopback.
    head_starts = [cmd for cmd in head_cmds if RAY_START.search(cmd) and "--head" in cmd]
    if not head_starts:
        violations.append("head_start_ray_commands: no `ray start --head` command")
    for cmd in head_starts:
        if "--dashboard-host=127.0.0.1" not in cmd:
            violations.append(f"head start command lacks --dashboard-host=127.0.0.1: {cmd!r}")
    for cmd in head_cmds + worker_cmds:
        if "0.0.0.0" in cmd:
            violations.append(f"start command binds 0.0.0.0: {cmd!r}")

    # Token authentication on every Ray process of the cluster.
    for key, cmds in (("head_start_ray_commands", head_cmds), ("worker_start_ray_commands", worker_cmds)):
        starts = [cmd for cmd in cmds if RAY_START.search(cmd)]
        if not starts:
            violations.append(f"{key}: no `ray start` command")
        violations += [f"{key}: RAY_AUTH_MODE=token not set: {cmd!r}" for cmd in starts if not AUTH_TOKEN.search(cmd)]
    if not any(str(remote).endswith(".ray/auth_token") for remote in (config.get("file_mounts") or {})):
        violations.append("file_mounts: the auth token (~/.ray/auth_token) is not shipped to the nodes")

    # Every node type in an explicit security group: its own SecurityGroupIds, or the provider's named
    # group, which Ray creates and assigns to every node type without SecurityGroupIds.
    provider = config.get("provider") or {}
    security_group = provider.get("security_group") or {}
    for name, node_type in (config.get("available_node_types") or {}).items():
        node_config = node_type.get("node_config") or {}
        if not node_config.get("SecurityGroupIds") and not security_group.get("GroupName"):
            violations.append(f"node type {name}: no explicit security group")
        for resource, amount in (node_type.get("resources") or {}).items():
            if not isinstance(amount, int) or isinstance(amount, bool):
                violations.append(f"node type {name}: resource {resource}={amount!r} is not an integer")

    # Nothing open to the world but SSH. (Ray itself adds the self-referencing intra-cluster rule and
    # SSH from 0.0.0.0/0; these are the extra rules it adds on top.)
    for rule in security_group.get("IpPermissions") or []:
        sources = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
        sources |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        ssh_only = str(rule.get("IpProtocol")) == "tcp" and rule.get("FromPort") == 22 and rule.get("ToPort") == 22
        if sources & WORLD and not ssh_only:
            violations.append(f"ingress rule open to the world beyond SSH: {rule!r}")
    return violations


@pytest.fixture(scope="module")
def raw_config() -> dict[str, Any]:
    with open(CLUSTER_YAML) as f:
        config = yaml.safe_load(f)
    assert isinstance(config, dict)
    return config


@pytest.fixture
def config(raw_config: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(raw_config)


def test_ray_accepts_the_cluster_file(config: dict[str, Any]) -> None:
    prepared = prepare_config(config)
    validate_config(prepared)  # raises on schema errors
    assert prepared["cluster_name"] == "tuning"
    assert prepared["provider"]["type"] == "aws"
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 1
    assert workers["resources"]["GPU"] >= 1
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["file_mounts"]["/home/ubuntu/tuning"] == "."
    # merge_setup_commands puts the common setup (which installs the project) on head and workers.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("pip install -e /home/ubuntu/tuning" in cmd for cmd in prepared[key])
    assert not any("torch==" in cmd for cmd in prepared["setup_commands"])
    head_start = " ".join(prepared["head_start_ray_commands"])
    assert "--port=6379" in head_start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start


def test_cluster_file_keeps_the_security_policy(config: dict[str, Any]) -> None:
    assert check_cluster_policy(config) == []
    # Also after Ray has filled in its defaults: nothing the file leaves out may reopen the dashboard.
    assert check_cluster_policy(prepare_config(config)) == []


def _dashboard_on_all_interfaces(config: dict[str, Any]) -> None:
    config["head_start_ray_commands"] = [
        cmd.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
        for cmd in config["head_start_ray_commands"]
    ]


def _auth_mode_removed(config: dict[str, Any]) -> None:
    config["worker_start_ray_commands"] = [
        cmd.replace("RAY_AUTH_MODE=token ", "") for cmd in config["worker_start_ray_commands"]
    ]


def _dashboard_port_open_to_world(config: dict[str, Any]) -> None:
    rule = {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    config["provider"]["security_group"]["IpPermissions"].append(rule)


def _all_ports_open_to_ipv6_world(config: dict[str, Any]) -> None:
    rule = {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    config["provider"]["security_group"]["IpPermissions"].append(rule)


def _float_gpu(config: dict[str, Any]) -> None:
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 1.0


def _node_type_without_security_group(config: dict[str, Any]) -> None:
    del config["provider"]["security_group"]
    for node_type in config["available_node_types"].values():
        node_type["node_config"].pop("SecurityGroupIds", None)


def _head_command_left_to_defaults(config: dict[str, Any]) -> None:
    # Ray's AWS defaults start the head with --dashboard-host=0.0.0.0.
    del config["head_start_ray_commands"]
    config.update(prepare_config(config))


def _token_not_shipped(config: dict[str, Any]) -> None:
    config["file_mounts"] = {"/home/ubuntu/tuning": "."}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_dashboard_on_all_interfaces, "0.0.0.0"),
        (_auth_mode_removed, "RAY_AUTH_MODE=token not set"),
        (_dashboard_port_open_to_world, "open to the world"),
        (_all_ports_open_to_ipv6_world, "open to the world"),
        (_float_gpu, "GPU=1.0 is not an integer"),
        (_node_type_without_security_group, "no explicit security group"),
        (_head_command_left_to_defaults, "0.0.0.0"),
        (_token_not_shipped, "auth token"),
    ],
)
def test_policy_catches_violation(
    config: dict[str, Any], mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    mutate(config)
    violations = check_cluster_policy(config)
    assert any(expected in v for v in violations), violations


def test_schema_alone_does_not_catch_float_resources(config: dict[str, Any]) -> None:
    # jsonschema counts 1.0 as an integer, so only check_cluster_policy stops a float GPU count.
    _float_gpu(config)
    validate_config(prepare_config(config))
    assert check_cluster_policy(config)
