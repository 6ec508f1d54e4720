"""Drift remediation vs Cloud Custodian (c7n), on the same emulated estate, in one run.

The estate: N security groups (default 1,000) attached to tagged PostgreSQL instances (5 groups
each). Every group allows 5432 from 10.0.0.0/8 and 443 from the world (benign); a third of them
also allow 5432 from 0.0.0.0/0, in the same permission as 10.0.0.0/8 (the sibling must survive).

Compared, each in its own fresh process (same method for both: wall time from spawn to exit, peak
RSS from wait4's ru_maxrss, API calls counted at the emulator, correctness checked afterwards):

* accessctl: the RemediateDriftFunction handler's scheduled full scan, enforce mode, with only the
  ingress rule on (what the Custodian policy does); and again with all seven rules on;
* Custodian: ``custodian run`` of a security-group policy (ingress Cidr 0.0.0.0/0 on 5432,
  remove-permissions matched), with ``AWS_ENDPOINT_URL`` pointing at the emulator.

Then the event path: time from a CloudTrail event handed to the handler to the rule closed, cold
(first invocation in a fresh process, imports included) and warm (later invocations).

Where the time goes: the emulator runs in this process, which is otherwise idle while a contender
runs, so this process's CPU time during a run is the emulator's; the contender's own CPU time comes
from wait4. On 2 cores the two overlap only as far as the contender makes concurrent calls.

The emulator: moto's TransactWriteItems deep-copies the whole table once per action (for rollback),
so one 50-record audit batch (100 actions) copies the audit table 100 times, seconds per call and
growing with the table; AWS has no such cost. The local stack (and so this bench) replaces that with
an undo log of just the items a transaction touches (same outcome, see ``accessctl_local.moto_patches``).
Likewise moto answers every ``Query`` by listing and sorting the whole table (the audit chain's head
reads grow with its history); the local stack reads the one partition. Every request also paid
about 1 ms in moto's dispatch (listing moto's package directory, listing the response class's
members) and every item put the square of its attributes (its size summed again per attribute):
the local stack does each once. ``--moto-dispatch`` measures without those two, ``--stock-emulator``
measures moto as released.

Where the emulator's time goes: its server threads are timed per request (``time.thread_time``,
request line to last byte) and summed per operation, for each contender (the table's last part);
``--emulator-profile DIR`` also writes a cProfile (CPU time) of each operation's requests, per
contender and round, which slows the emulator: use it to see where, not how long.

    .venv/bin/python bench/remediation_bench.py [--groups 1000] [--repeat 3] [--warm 30]
        [--stock-emulator | --moto-dispatch] [--emulator-profile DIR]

Each contender runs ``--repeat`` times (default 3), rounds rotating who goes first; the table shows
medians. Numbers go in the table, never in assertions; compare within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "RemediateDriftFunction"
PROTECTED = [{"Key": "accessctl:protected", "Value": "true"}]
GROUPS_PER_DATABASE = 5
WORLD = "0.0.0.0/0"

CUSTODIAN_POLICY = """\
policies:
  - name: close-world-5432
    resource: aws.security-group
    filters:
      - type: ingress
        Ports: [5432]
        Cidr:
          value: "0.0.0.0/0"
    actions:
      - type: remove-permissions
        ingress: matched
"""


def progress(message: str) -> None:
    print(f"[remediation-bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ child processes (the measured code)


class _Context:
    function_name = "accessctl-bench-RemediateDrift"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:accessctl-bench-RemediateDrift"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def _load_handler() -> Any:
    sys.path[:0] = [str(ROOT / "layers" / "accessctl"), str(ROOT / "functions" / "remediate_drift")]
    import app  # type: ignore[import-not-found]

    return app.lambda_handler


def child_scan(out: Path) -> None:
    handler = _load_handler()
    answer = handler({"action": "scan"}, _Context())
    out.write_text(json.dumps(answer))


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (the emulator's, from the event child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_event(out: Path, group: str, warm: int, emulator_pid: int) -> None:
    """Cold: imports + first invocation. Warm: ``warm`` more, the rule re-opened (untimed) before each."""
    emulator_before = _cpu_seconds(emulator_pid)
    started = time.perf_counter()
    handler = _load_handler()
    imported = time.perf_counter()
    event = json.loads((ROOT / "events" / "cloudtrail_authorize_sg_ingress.json").read_text())
    event["detail"]["requestParameters"]["groupId"] = group
    event["detail"]["responseElements"] = None
    first = handler(event, _Context())
    cold = time.perf_counter() - started
    first_invocation = time.perf_counter() - imported
    cold_emulator = _cpu_seconds(emulator_pid) - emulator_before
    import boto3

    ec2 = boto3.client("ec2")
    open_rule = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": WORLD}]}]
    warm_times, warm_emulator, fixed = [], [], [first["counts"]["fixed"]]
    for _ in range(warm):
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=open_rule)
        emulator_began = _cpu_seconds(emulator_pid)
        began = time.perf_counter()
        answer = handler(event, _Context())
        warm_times.append(time.perf_counter() - began)
        warm_emulator.append(_cpu_seconds(emulator_pid) - emulator_began)
        fixed.append(answer["counts"]["fixed"])
    out.write_text(
        json.dumps(
            {
                "cold": cold,
                "imports": imported - started,
                "first": first_invocation,
                "cold_emulator": cold_emulator,
                "warm": warm_times,
                "warm_emulator": warm_emulator,
                "fixed": fixed,
            }
        )
    )


# ------------------------------------------------------------------ the parent: estate, runs, table


@dataclass
class Run:
    name: str
    wall: float
    max_rss_mb: float
    calls: dict[tuple[str, str], int]
    correct: int = 0
    still_open: int = 0
    over_removed: int = 0
    exit_code: int = 0
    client_cpu: float = 0.0  # the contender's own CPU seconds (user + system)
    emulator_cpu: float = 0.0  # this process's CPU seconds meanwhile: the emulator serving it
    # The emulator's server threads, per (service, action): (requests, CPU seconds).
    emulator_ops: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, *actions: str, service: str | None = None) -> int:
        return sum(
            n for (svc, action), n in self.calls.items() if action in actions and (service is None or svc == service)
        )

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def side_calls(self) -> int:
        """Calls that are not reading or fixing the estate: the audit trail, the group index, notifications."""
        return sum(n for (service, _), n in self.calls.items() if service in ("dynamodb", "sns"))


# A child's ru_maxrss includes the memory of the process that forked it (Linux carries the old
# address space's high-water mark across exec), and this process holds the whole emulator. So each
# contender is started by a bare launcher (python -S, a few MB), which times it and reads its
# ru_maxrss with wait4: the same small offset for both contenders.
LAUNCHER = """
import json, os, sys, time
command = json.loads(sys.argv[1])
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall": time.perf_counter() - started, "maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime, "code": os.waitstatus_to_exitcode(status)}))
"""


def measure(command: list[str], env: dict[str, str], stack: Any, name: str, meter: Any) -> Run:
    stack.reset_api_call_counts()
    meter.reset()
    emulator_before = time.process_time()
    launched = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, json.dumps(command)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    emulator_cpu = time.process_time() - emulator_before
    try:
        result = json.loads(launched.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        progress(f"{name}: launcher failed: {launched.stderr[-2000:]}")
        return Run(name, 0.0, 0.0, stack.api_call_counts(), exit_code=-1)
    if result["code"] != 0:
        progress(f"{name} exited {result['code']}: {launched.stderr[-2000:]}")
    return Run(
        name,
        result["wall"],
        result["maxrss_kb"] / 1024,
        stack.api_call_counts(),
        exit_code=result["code"],
        client_cpu=result["cpu"],
        emulator_cpu=emulator_cpu,
        emulator_ops=meter.snapshot(),
    )


def build_estate(stack: Any, groups: int) -> tuple[list[str], set[str]]:
    ec2, rds = stack.client("ec2"), stack.client("rds")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group_ids: list[str] = []
    opened: set[str] = set()
    started = time.perf_counter()
    for number in range(groups):  # sequentially: concurrent CreateSecurityGroup 500s in moto
        group = ec2.create_security_group(GroupName=f"bench-db-{number}", Description="bench", VpcId=vpc)["GroupId"]
        is_open = number % 3 == 0
        ranges = [{"CidrIp": "10.0.0.0/8"}] + ([{"CidrIp": WORLD}] if is_open else [])
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": ranges},
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": WORLD}]},
            ],
        )
        group_ids.append(group)
        if is_open:
            opened.add(group)
    for number in range(0, groups, GROUPS_PER_DATABASE):
        rds.create_db_instance(
            DBInstanceIdentifier=f"bench-db-{number // GROUPS_PER_DATABASE}",
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            EngineVersion="16.3",
            MasterUsername="postgres",
            MasterUserPassword="not-used-by-the-bench",
            AllocatedStorage=20,
            VpcSecurityGroupIds=group_ids[number : number + GROUPS_PER_DATABASE],
            Tags=PROTECTED,
            EnableIAMDatabaseAuthentication=True,
            StorageEncrypted=True,
        )
    progress(
        f"estate: {groups} groups ({len(opened)} open on 5432), {-(-groups // GROUPS_PER_DATABASE)} databases, in {time.perf_counter() - started:.1f}s"
    )
    return group_ids, opened


def reopen(stack: Any, opened: set[str]) -> None:
    """Put the world back on 5432 of the open groups (for the next contender)."""
    ec2 = stack.client("ec2")
    for group in sorted(opened):
        permissions = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
        present = {(p.get("FromPort"), r["CidrIp"]) for p in permissions for r in p.get("IpRanges", [])}
        missing = [c for c in ("10.0.0.0/8", WORLD) if (5432, c) not in present]
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 5432,
                        "ToPort": 5432,
                        "IpRanges": [{"CidrIp": c} for c in missing],
                    }
                ],
            )
        if (443, WORLD) not in present:
            ec2.authorize_security_group_ingress(
                GroupId=group,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": WORLD}]}],
            )


def check(stack: Any, run: Run, group_ids: list[str], opened: set[str]) -> None:
    """Correct: exactly {5432 from 10.0.0.0/8, 443 from the world} left on every group."""
    expected = {("tcp", 5432, "10.0.0.0/8"), ("tcp", 443, WORLD)}
    described = stack.client("ec2").describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
    for group in described:
        found = {
            (p["IpProtocol"], p.get("FromPort"), r["CidrIp"])
            for p in group["IpPermissions"]
            for r in p.get("IpRanges", [])
        }
        if found == expected:
            run.correct += 1
        if ("tcp", 5432, WORLD) in found:
            run.still_open += 1
        if expected - found:
            run.over_removed += 1


def child_environment(stack: Any, rule_modes: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(stack.functions[FUNCTION].environment)
    env.update(
        {
            "AWS_ENDPOINT_URL": stack.endpoint_url,
            "AWS_DEFAULT_REGION": stack.region,
            "AWS_REGION": stack.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # not a secret: the emulator accepts any
            "POWERTOOLS_TRACE_DISABLED": "true",
            "REMEDIATION_MODE": "enforce",
            "REMEDIATION_RULE_MODES": json.dumps(rule_modes),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    sys.path[:0] = [str(ROOT / "layers" / "accessctl")]
    from accessctl.remediation.rules import RULES, SG_OPEN_INGRESS
    from accessctl_local import LocalStack, moto_patches

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    only_ingress = {rule.id: "off" for rule in RULES if rule.id != SG_OPEN_INGRESS}
    results: dict[str, Any] = {"groups": args.groups}
    with (
        tempfile.TemporaryDirectory(prefix="remediation-bench-") as scratch_dir,
        LocalStack.start(project_root=ROOT, run_schedules=False, parameter_overrides={"LogLevel": "WARNING"}) as stack,
    ):
        scratch = Path(scratch_dir)
        if args.stock_emulator or args.moto_dispatch:
            moto_patches.uninstall_lean_dispatch()
            moto_patches.uninstall_linear_item_size()
        if args.stock_emulator:
            moto_patches.uninstall_transaction_undo_log()
            moto_patches.uninstall_partition_query()
        meter = moto_patches.install_request_meter(profile=args.emulator_profile is not None)
        group_ids, opened = build_estate(stack, args.groups)
        policy = scratch / "policy.yml"
        policy.write_text(CUSTODIAN_POLICY)
        me = [sys.executable, str(Path(__file__).resolve())]
        custodian = args.custodian or str(Path(sys.executable).with_name("custodian"))
        contenders = [
            (
                "accessctl scan (ingress rule)",
                [*me, "--child-scan", str(scratch / "scan.json")],
                child_environment(stack, only_ingress),
            ),
            (
                "Custodian remove-permissions",
                [custodian, "run", "-s", str(scratch / "c7n"), "--cache-period", "0", "-r", stack.region, str(policy)],
                child_environment(stack, {}),
            ),
            (
                "accessctl scan (all 7 rules)",
                [*me, "--child-scan", str(scratch / "scan-all.json")],
                child_environment(stack, {}),
            ),
        ]
        # Each round starts with the next contender, so no one always runs first (right after the
        # estate is built) or last; the table shows each contender's median.
        measured: dict[str, list[Run]] = {name: [] for name, _, _ in contenders}
        for round_number in range(args.repeat):
            shift = round_number % len(contenders)
            for name, command, env in contenders[shift:] + contenders[:shift]:
                reopen(stack, opened)
                progress(f"running {name} (round {round_number + 1} of {args.repeat})")
                run = measure(command, env, stack, name, meter)
                if args.emulator_profile is not None:
                    _save_profiles(meter.profiles(), args.emulator_profile, name, round_number)
                check(stack, run, group_ids, opened)
                measured[name].append(run)
                progress(
                    f"{name}: {run.wall:.2f}s, {run.max_rss_mb:.0f} MB, {run.total_calls} calls, {run.correct}/{len(group_ids)} correct"
                )
        results["runs"] = [median_run(measured[name]) for name, _, _ in contenders]
        results["rounds"] = {name: [(run.wall, run.max_rss_mb) for run in runs] for name, runs in measured.items()}
        # The event path, cold then warm, against one open group.
        reopen(stack, opened)
        target = sorted(opened)[0]
        out = scratch / "event.json"
        env = child_environment(stack, only_ingress)
        started = time.perf_counter()
        subprocess.run(
            [*me, "--child-event", str(out), target, str(args.warm), str(os.getpid())],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        results["event_process"] = time.perf_counter() - started
        results["event"] = json.loads(out.read_text())
        results["estate_open"] = len(opened)
        results["custodian_version"] = _custodian_version(custodian)
        results["emulator"] = (
            "stock moto"
            if args.stock_emulator
            else "moto, transactions with an undo log, queries of one partition"
            + ("" if args.moto_dispatch else ", lean dispatch, linear item size")
        )
    return results


def _save_profiles(profiles: dict[tuple[str, str], list[Any]], directory: Path, name: str, round_number: int) -> None:
    """One pstats file per contender, round and emulated operation (read with ``python -m pstats``)."""
    import pstats

    directory.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    for (service, action), each in profiles.items():
        stats = pstats.Stats(each[0])
        for profile in each[1:]:
            stats.add(profile)
        stats.dump_stats(directory / f"{slug}.{round_number + 1}.{service}.{action}.pstats")


def _median_ops(runs: list[Run]) -> dict[tuple[str, str], tuple[int, float]]:
    """Per operation: the requests of the median-wall run's, the median CPU seconds over the runs."""
    keys = {key for run in runs for key in run.emulator_ops}
    return {
        key: (
            max(run.emulator_ops.get(key, (0, 0.0))[0] for run in runs),
            statistics.median(run.emulator_ops.get(key, (0, 0.0))[1] for run in runs),
        )
        for key in keys
    }


def median_run(runs: list[Run]) -> Run:
    """One row for a contender's runs: median times and memory, the calls of its median-wall run, and
    its worst correctness (a run that missed or over-removed anything shows)."""
    by_wall = sorted(runs, key=lambda run: run.wall)
    middle = by_wall[(len(by_wall) - 1) // 2]
    return Run(
        middle.name,
        statistics.median(run.wall for run in runs),
        statistics.median(run.max_rss_mb for run in runs),
        middle.calls,
        correct=min(run.correct for run in runs),
        still_open=max(run.still_open for run in runs),
        over_removed=max(run.over_removed for run in runs),
        exit_code=next((run.exit_code for run in runs if run.exit_code), 0),
        client_cpu=statistics.median(run.client_cpu for run in runs),
        emulator_cpu=statistics.median(run.emulator_cpu for run in runs),
        emulator_ops=_median_ops(runs),
        note="" if all(run.calls == middle.calls for run in runs) else "calls differ between runs",
    )


def _custodian_version(custodian: str) -> str:
    try:
        return subprocess.run([custodian, "version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def render(results: dict[str, Any]) -> str:
    runs: list[Run] = results["runs"]
    ours, peer, full = runs
    open_groups = results["estate_open"]
    lines = [
        f"Drift remediation vs Cloud Custodian {results['custodian_version']} on {results['groups']} security groups "
        f"({open_groups} open on 5432 from 0.0.0.0/0, each next to a benign 10.0.0.0/8 sibling; 443 from the world benign); "
        f"emulator: {results['emulator']}",
        "",
        f"{'contender':<32} {'wall s':>7} {'own CPU':>8} {'emu CPU':>8} {'peak MB':>8} {'calls':>6} {'revokes':>8} {'SG desc':>8} {'RDS desc':>9} {'ddb+sns':>10} {'correct':>9} {'open':>5} {'over':>5}",
    ]
    for run in runs:
        rds_describes = sum(n for (svc, a), n in run.calls.items() if svc == "rds" and a.startswith("Describe"))
        side = run.side_calls
        lines.append(
            f"{run.name:<32} {run.wall:>7.2f} {run.client_cpu:>8.2f} {run.emulator_cpu:>8.2f} {run.max_rss_mb:>8.1f} {run.total_calls:>6} {run.count('RevokeSecurityGroupIngress'):>8} "
            f"{run.count('DescribeSecurityGroups'):>8} {rds_describes:>9} {side:>10} {run.correct:>5}/{results['groups']:<3} {run.still_open:>5} {run.over_removed:>5}"
            + (f"  exit {run.exit_code}" if run.exit_code else "")
            + (f"  ({run.note})" if run.note else "")
        )
    rounds = results.get("rounds") or {}
    if any(len(each) > 1 for each in rounds.values()):
        lines += ["", f"Medians of {max(len(each) for each in rounds.values())} rounds; each run's wall s / peak MB:"]
        for name, each in rounds.items():
            lines.append(f"  {name:<32} " + "   ".join(f"{wall:.2f} / {peak:.1f}" for wall, peak in each))
    lines += [
        "",
        "Ratios, accessctl (ingress rule) / Custodian  (targets: wall <= 0.6x, peak memory <= 0.6x; calls at the floor)",
        f"  wall time      {ratio(ours.wall, peer.wall)}  (own CPU {ratio(ours.client_cpu, peer.client_cpu)}, emulator CPU {ratio(ours.emulator_cpu, peer.emulator_cpu)})",
        f"  peak memory    {ratio(ours.max_rss_mb, peer.max_rss_mb)}  ({ours.max_rss_mb:.1f} MB vs {peer.max_rss_mb:.1f} MB; 0.6x is {0.6 * peer.max_rss_mb:.1f} MB)",
        f"  AWS calls      {ratio(ours.total_calls, peer.total_calls)}  (EC2+RDS only: {ratio(ours.total_calls - ours.side_calls, peer.total_calls)})",
        f"  floor          {open_groups} revokes + describe pages; accessctl made {ours.count('RevokeSecurityGroupIngress')} revokes, "
        f"{ours.count('DescribeSecurityGroups')} SG describe page(s), {sum(n for (s, a), n in ours.calls.items() if s == 'rds')} RDS describe page(s), "
        f"plus {ours.count('TransactWriteItems', 'PutItem', service='dynamodb')} audit transactions (after {ours.count('Query', service='dynamodb')} chain-head queries), "
        f"{ours.count('BatchWriteItem')} group-index write(s) and {ours.count('Publish')} notifications",
        f"  all 7 rules    wall {ratio(full.wall, peer.wall)}, memory {ratio(full.max_rss_mb, peer.max_rss_mb)} of Custodian's",
        "",
        "Calls by action:",
    ]
    actions = sorted({key for run in runs for key in run.calls})
    for service, action in actions:
        lines.append(
            f"  {service + ':' + action:<44} " + " ".join(f"{run.calls.get((service, action), 0):>8}" for run in runs)
        )
    lines += [
        "",
        "Emulator CPU per operation (its server threads, request line to last byte; medians over the rounds):",
        f"  {'':<44} " + " ".join(f"{'n':>5} {'CPU s':>6} {'ms/call':>7}" for _ in runs),
    ]
    ops = sorted({key for run in runs for key in run.emulator_ops})
    for service, action in ops:
        cells = []
        for run in runs:
            n, seconds = run.emulator_ops.get((service, action), (0, 0.0))
            cells.append(f"{n:>5} {seconds:>6.3f} {seconds / n * 1000 if n else 0:>7.2f}")
        lines.append(f"  {service + ':' + action:<44} " + " ".join(cells))
    totals = [sum(seconds for _, seconds in run.emulator_ops.values()) for run in runs]
    lines.append(f"  {'server threads, total':<44} " + " ".join(f"{'':>5} {t:>6.3f} {'':>7}" for t in totals))
    lines.append(
        f"  {'rest of the emulator process':<44} "
        + " ".join(f"{'':>5} {run.emulator_cpu - t:>6.3f} {'':>7}" for run, t in zip(runs, totals, strict=True))
    )
    event = results["event"]
    warm = sorted(event["warm"])
    lines += [
        "",
        "Event path: CloudTrail event handed to the handler -> rule closed (the revoke has returned)",
        f"  cold (fresh process: imports + first invocation)   {event['cold'] * 1000:8.1f} ms   (target < 1000 ms; process total {results['event_process']:.2f} s)",
        f"    of which: handler module imports {event['imports'] * 1000:.0f} ms, first invocation {event['first'] * 1000:.0f} ms "
        f"(emulator CPU {event['cold_emulator'] * 1000:.0f} ms)",
    ]
    if warm:
        p95 = warm[max(0, -(-95 * len(warm) // 100) - 1)]
        lines.append(
            f"  warm (n={len(warm)}, median / p95 / max)                  {statistics.median(warm) * 1000:8.1f} / {p95 * 1000:.1f} / {warm[-1] * 1000:.1f} ms   (target < 100 ms)"
        )
        lines.append(
            f"    emulator CPU per warm invocation (median)          {statistics.median(event['warm_emulator']) * 1000:8.1f} ms"
        )
    lines.append(f"  closed every time: {all(n == 1 for n in event['fixed'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=30, help="warm event-path invocations")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of the three contenders, each round starting with the next"
    )
    parser.add_argument("--custodian", help="path of the custodian executable (default: the venv's)")
    parser.add_argument(
        "--stock-emulator",
        action="store_true",
        help="moto as released (TransactWriteItems copies every table it touches, per action; Query lists the whole table)",
    )
    parser.add_argument(
        "--moto-dispatch",
        action="store_true",
        help="moto's own request dispatch and item building (the local stack without the lean dispatch and linear item size)",
    )
    parser.add_argument(
        "--emulator-profile",
        type=Path,
        metavar="DIR",
        help="write a cProfile of the emulator per contender, round and operation to DIR (slows the emulator: not for timing)",
    )
    parser.add_argument("--child-scan", metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-event", nargs=4, metavar=("OUT", "GROUP", "WARM", "EMULATOR_PID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child_scan:
        child_scan(Path(args.child_scan))
        return 0
    if args.child_event:
        out, group, warm, emulator_pid = args.child_event
        child_event(Path(out), group, int(warm), int(emulator_pid))
        return 0
    results = run_all(args)
    sys.stdout.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
