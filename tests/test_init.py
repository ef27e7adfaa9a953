"""``intelmq-crossborder init ROLE --root DIR`` (issue 14 §2): a hub's first configuration.

Each role is written into a fresh IntelMQ root and must then pass ``intelmq-crossborder check``
and ``intelmqctl check``; the files it writes are read back with the readers the bots use
(trust store, signing key, agreements).  Hostile input (hub ids with white space, upper case or
look-alike letters, a root that is a file or not writable) exits 2 with one line and writes
nothing.  One integration test starts the CSIRT's bots with ``intelmqctl`` under the root.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from intelmq_crossborder import harmonization
from intelmq_crossborder.core import files
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.runtime import deploy
from intelmq_crossborder.runtime.instance import PIPELINES_DIR, IntelMQInstance, intelmq_ids, load_runtime
from intelmq_crossborder.testing.polling import wait_until
from tests.clirun import run
from tests.isolation import REDIS_DB

BIN = Path(sys.executable).parent
CLI = str(BIN / "intelmq-crossborder")
ROLES = ("national-hub", "cross-border-hub", "csirt")


def do_init(capsys, *args):
    return run(["init", *map(str, args)], capsys)


def written_runtime(root: Path) -> dict:
    return yaml.safe_load((root / "etc" / "runtime.yaml").read_text("utf-8"))


def all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from all_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from all_strings(v)


def check_tool(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "check", str(root / "etc" / "runtime.yaml")], capture_output=True, text=True,
                          timeout=300)


def test_roles_are_the_ready_pipelines_and_their_own_identity():
    """The table of roles names each template's own hub id and country: the ones its bots use."""
    assert set(deploy.ROLES) == set(ROLES)
    for role in deploy.ROLES.values():
        runtime = load_runtime(role.directory / "runtime.yaml", Path("/x"))
        hub_ids = {c["parameters"]["hub_id"] for b, c in runtime.items() if b != "global"
                   and "hub_id" in c.get("parameters", {})}
        assert hub_ids == {role.hub_id}, role.name
        countries = {c["parameters"][n] for b, c in runtime.items() if b != "global"
                     for n in deploy.COUNTRY_PARAMETERS if n in c.get("parameters", {})}
        assert countries <= {role.country}, role.name


@pytest.mark.parametrize("role", ROLES)
def test_init_writes_a_root_that_passes_both_checks(role, intelmq_workdir, capsys):
    root = intelmq_workdir / "root"
    status, out, err = do_init(capsys, role, "--root", root)
    assert status == 0, err
    spec = deploy.ROLES[role]
    runtime = written_runtime(root)
    template = load_runtime(spec.directory / "runtime.yaml", root)
    # the cross-border hub's route to a partner's TAXII server needs its URL (--set): left out
    left = {"taxii-collector", "taxii-output-partner-cti"} if role == "cross-border-hub" else set()
    assert list(runtime) == [b for b in template if b not in left]
    for bot_id in sorted(left):
        assert f"left out: {bot_id} (and its route and agreement): it needs --set PARTNER_TAXII_URL=..." in out
    # placeholders expanded; nothing points into the package
    strings = list(all_strings(runtime))
    assert not [s for s in strings if "${" in s or str(PIPELINES_DIR) in s]
    # the routers read the copies of the agreement templates, under etc/
    routers = {b: c["parameters"]["agreements_dir"] for b, c in runtime.items()
               if b != "global" and "agreements_dir" in c.get("parameters", {})}
    assert routers
    for bot_id, directory in routers.items():
        directory = Path(directory)
        assert directory.parent == root / "etc", bot_id
        source = Path(template[bot_id]["parameters"]["agreements_dir"])
        copied = sorted(p.name for p in directory.glob("*.yaml"))
        assert copied == sorted(p.name for p in source.glob("*.yaml") if not (left and p.name == "partner-cti.yaml"))
        for name in copied:           # the template's own identity: copied byte for byte
            assert (directory / name).read_bytes() == (source / name).read_bytes()
        assert {Path(n).stem for n in copied} == set(runtime[bot_id]["parameters"]["destination_queues"]) - {
            "_default"}
    # signing key (0600) and a trust store the collector accepts, holding this hub's own key
    key_file = root / "etc" / "exchange" / "signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bundle.load_private_key(key_file)
    trust = bundle.TrustStore.from_file(root / "etc" / "exchange" / "trust.yaml")
    assert list(trust.peers) == [spec.hub_id]
    assert trust.country_of(spec.hub_id) == spec.country
    assert bundle.public_key_b64(trust.key(spec.hub_id, bundle.key_id_of(key)).public_key) == \
        bundle.public_key_b64(key)
    assert bundle.key_id_of(key) in out
    # IntelMQ's files: the harmonization with the cross-border fields, the state file
    assert harmonization.check(root / "etc" / "harmonization.conf") == []
    assert json.loads((root / "var" / "lib" / "state.json").read_text())["upgrades"]
    # every folder a bot writes into exists
    for bot_id, conf in runtime.items():
        for name, value in (conf.get("parameters", {}) if bot_id != "global" else {}).items():
            if isinstance(value, str) and value.startswith(str(root) + "/"):
                folder = Path(value) if name.endswith("_dir") or name == "path" else Path(value).parent
                assert folder.is_dir(), (bot_id, name, value)
    if intelmq_ids():                # run as root: the bots' user owns what init wrote
        assert (key_file.stat().st_uid, key_file.stat().st_gid) == intelmq_ids()
    # the two checks
    proc = check_tool(root)
    assert proc.returncode == 0 and "No errors found." in proc.stdout, proc.stderr
    inst = IntelMQInstance(root, runtime)
    proc = inst.ctl("check", "--no-connections", check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["status"] == "success", report
    assert [line for line in report["lines"] if line[0] == "error"] == []


def test_check_of_an_init_root_is_not_vacuous(intelmq_workdir, capsys):
    """A key-less trust store after init is refused: the check above does read what init wrote."""
    root = intelmq_workdir / "root"
    assert do_init(capsys, "csirt", "--root", root)[0] == 0
    (root / "etc" / "exchange" / "trust.yaml").write_text("version: 1\npeers: {}\n")
    proc = check_tool(root)
    assert proc.returncode == 1 and "bot exchange-collector: Parameter trust_store" in proc.stderr


def test_own_hub_id_and_country(intelmq_workdir, capsys):
    root = intelmq_workdir / "root"
    status, _out, err = do_init(capsys, "national-hub", "--root", root, "--hub-id", "fr-hub", "--country", "FR")
    assert status == 0, err
    runtime = written_runtime(root)
    params = {b: c["parameters"] for b, c in runtime.items() if b != "global"}
    assert {p["hub_id"] for p in params.values() if "hub_id" in p} == {"fr-hub"}
    assert params["provenance-outbound"]["origin_country"] == "FR"
    assert params["provenance-outbound"]["originator"] == "fr-hub"
    assert params["feed-collector"]["provider"] == "fr-hub"
    assert params["feed-collector"]["name"] == "fr-hub sensor feed"
    # the peers stay the template's, to edit
    assert {p["recipient"] for p in params.values() if "recipient" in p} == {"de-hub", "fi-hub", "at-csirt"}
    assert not [s for s in all_strings(params) if s == "at-hub" or s.startswith("at-hub ")]
    # "only our own country's events" follows the country; the rest of each agreement is the template's
    agreements = root / "etc" / "agreements"
    for name in ("de-hub.yaml", "fi-hub.yaml"):
        mine = yaml.safe_load((agreements / name).read_text())
        theirs = yaml.safe_load((PIPELINES_DIR / "national-hub" / "agreements" / name).read_text())
        assert mine == {**theirs, "origin_countries": ["FR"]}
    trust = bundle.TrustStore.from_file(root / "etc" / "exchange" / "trust.yaml")
    assert list(trust.peers) == ["fr-hub"] and trust.country_of("fr-hub") == "FR"
    proc = check_tool(root)
    assert proc.returncode == 0 and "No errors found." in proc.stdout, proc.stderr


def test_existing_files_are_not_overwritten_without_force(intelmq_workdir, capsys):
    root = intelmq_workdir / "root"
    assert do_init(capsys, "csirt", "--root", root)[0] == 0
    written = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    status, out, err = do_init(capsys, "csirt", "--root", root)
    assert status == 2 and out == ""
    assert "use --force to overwrite" in err and "runtime.yaml" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == written      # nothing touched
    # another role into the same root: refused as well (its runtime.yaml would replace this one)
    assert do_init(capsys, "national-hub", "--root", root)[0] == 2
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == written
    status, out, err = do_init(capsys, "csirt", "--root", root, "--force")
    assert status == 0, err
    key_file = root / "etc" / "exchange" / "signing-key.pem"
    assert key_file.read_bytes() != written[key_file]           # a new key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"replaced {key_file}" in out
    trust = bundle.TrustStore.from_file(root / "etc" / "exchange" / "trust.yaml")
    assert trust.key("at-csirt", bundle.key_id_of(bundle.load_private_key(key_file)))


def test_force_keeps_the_mode_of_a_replaced_file_and_leaves_other_files(intelmq_workdir, capsys):
    root = intelmq_workdir / "root"
    (root / "etc").mkdir(parents=True)
    files.atomic_write_text(root / "etc" / "runtime.yaml", "global: {}\n", mode=0o664)
    (root / "etc" / "mine.yaml").write_text("keep me\n")
    assert do_init(capsys, "csirt", "--root", root)[0] == 2
    assert (root / "etc" / "runtime.yaml").read_text() == "global: {}\n"
    assert do_init(capsys, "csirt", "--root", root, "--force")[0] == 0
    assert stat.S_IMODE((root / "etc" / "runtime.yaml").stat().st_mode) == 0o664
    assert "exchange-collector" in written_runtime(root)
    assert (root / "etc" / "mine.yaml").read_text() == "keep me\n"


def test_a_foreign_agreement_in_the_folder_is_named(intelmq_workdir, capsys):
    """A router reads every agreement of its folder: one init did not write is pointed out, and
    the check then names the recipient without a path."""
    root = intelmq_workdir / "root"
    (root / "etc" / "agreements").mkdir(parents=True)
    shutil.copy(PIPELINES_DIR / "national-hub" / "agreements" / "fi-hub.yaml", root / "etc" / "agreements")
    status, out, err = do_init(capsys, "csirt", "--root", root)
    assert status == 0, err
    assert f"note: {root}/etc/agreements/fi-hub.yaml is not from the csirt template" in out
    proc = check_tool(root)
    assert proc.returncode == 1 and "Recipient 'fi-hub'" in proc.stderr, proc.stderr


def test_an_existing_harmonization_and_state_file_are_merged_not_replaced(intelmq_workdir, capsys):
    root = intelmq_workdir / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "lib").mkdir(parents=True)
    stock = harmonization.load_stock()
    stock["event"]["extra.site"] = {"description": "a field of this installation", "type": "String"}
    (root / "etc" / "harmonization.conf").write_text(json.dumps(stock))
    (root / "var" / "lib" / "state.json").write_text('{"mine": true}')
    status, out, err = do_init(capsys, "csirt", "--root", root)
    assert status == 0, err
    merged = json.loads((root / "etc" / "harmonization.conf").read_text())
    assert merged["event"]["extra.site"] == stock["event"]["extra.site"]
    assert harmonization.check(root / "etc" / "harmonization.conf") == []
    assert list((root / "etc").glob("harmonization.conf.bak-*"))       # the old file kept
    assert (root / "var" / "lib" / "state.json").read_text() == '{"mine": true}'


@pytest.mark.parametrize("hub_id, says", [
    ("fr-hub\n", "white space or a line break"),
    ("fr-hub ", "white space or a line break"),
    (" fr-hub", "white space or a line break"),
    ("fr hub", "white space or a line break"),
    ("FR-HUB", "did you mean 'fr-hub'"),
    ("Fr-hub", "did you mean 'fr-hub'"),
    ("fr-h\u0443b", "U+0443 CYRILLIC SMALL LETTER U"),          # Cyrillic u
    ("fr\u2010hub", "U+2010 HYPHEN"),                            # a hyphen that is not '-'
    ("fr-hub\u200b", "U+200B ZERO WIDTH SPACE"),
    ("", "is empty"),
    ("-fr-hub", "is not a hub id"),
    ("fr_hub", "is not a hub id"),
    ("f" * 64, "is not a hub id"),
    ("de-hub", "is a peer or recipient"),                         # a peer of the template
])
def test_hostile_hub_ids_are_refused_and_nothing_is_written(hub_id, says, tmp_path, capsys):
    root = tmp_path / "root"
    status, out, err = do_init(capsys, "national-hub", "--root", root, f"--hub-id={hub_id}", "--country", "FR")
    assert status == 2 and out == ""
    assert err.startswith("intelmq-crossborder: error: init: ") and says in err, err
    assert len(err.splitlines()) == 1
    assert not root.exists()


@pytest.mark.parametrize("country, says", [
    ("fr", "did you mean 'FR'"), ("FR\n", "white space"), (" FR", "white space"), ("FRA", "not an ISO 3166-1"),
    ("\u0410T", "U+0410 CYRILLIC CAPITAL LETTER A"), ("", "is empty"), ("F1", "not an ISO 3166-1"),
])
def test_hostile_countries_are_refused(country, says, tmp_path, capsys):
    root = tmp_path / "root"
    status, out, err = do_init(capsys, "csirt", "--root", root, "--hub-id", "fr-csirt", f"--country={country}")
    assert status == 2 and says in err and len(err.splitlines()) == 1, err
    assert not root.exists()


def test_hub_id_and_country_go_together(tmp_path, capsys):
    status, _out, err = do_init(capsys, "csirt", "--root", tmp_path / "root", "--hub-id", "fr-csirt")
    assert status == 2 and "--hub-id and --country go together" in err
    assert not (tmp_path / "root").exists()


def test_unknown_role(tmp_path, capsys):
    status, _out, err = do_init(capsys, "national_hub", "--root", tmp_path / "root")
    assert status == 2 and "invalid choice" in err
    assert not (tmp_path / "root").exists()


def test_a_root_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "root"
    target.write_text("not a folder")
    status, out, err = do_init(capsys, "csirt", "--root", target)
    assert status == 2 and "is not a directory" in err and len(err.splitlines()) == 1
    assert target.read_text() == "not a folder"
    status, out, err = do_init(capsys, "csirt", "--root", target / "below")
    assert status == 2 and "is not a directory" in err


def test_a_target_that_is_a_folder_is_refused_even_with_force(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "etc" / "runtime.yaml").mkdir(parents=True)
    status, _out, err = do_init(capsys, "csirt", "--root", root, "--force")
    assert status == 2 and "runtime.yaml: is a directory" in err
    assert not (root / "etc" / "exchange").exists()


def test_a_root_path_that_is_not_utf8(tmp_path, capsys):
    root = Path(os.fsdecode(bytes(tmp_path) + b"/r\xff"))
    status, _out, err = do_init(capsys, "csirt", "--root", root)
    assert status == 2 and "not valid UTF-8" in err
    assert not os.path.lexists(root)


def _as_unprivileged():
    """argv prefix that runs a command as a user who cannot write where root can."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if not runuser or not intelmq_ids():
        pytest.skip("running as root without runuser or the intelmq user: no unprivileged user to try")
    return [runuser, "-u", "intelmq", "--"]


def test_an_unwritable_root(intelmq_workdir):
    parent = intelmq_workdir / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    for root in (parent, parent / "root"):
        proc = subprocess.run(_as_unprivileged() + [CLI, "init", "csirt", "--root", str(root)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert proc.stderr.startswith("intelmq-crossborder: error: init: ")
        assert "not writable" in proc.stderr or "Permission denied" in proc.stderr, proc.stderr
        assert proc.stdout == ""
    assert list(parent.iterdir()) == []


def test_an_unwritable_etc_fails_cleanly(intelmq_workdir):
    """The root is writable but its etc/exchange is not: a clear error naming the folder."""
    root = intelmq_workdir / "root"
    (root / "etc" / "exchange").mkdir(parents=True)
    for path in (root, root / "etc"):
        path.chmod(0o777)
    (root / "etc" / "exchange").chmod(0o555)
    proc = subprocess.run(_as_unprivileged() + [CLI, "init", "csirt", "--root", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert "etc/exchange" in proc.stderr and "not writable" in proc.stderr, proc.stderr
    assert not (root / "etc" / "agreements").exists() and not (root / "etc" / "runtime.yaml").exists()


# --- bots started with intelmqctl under the root that init wrote --------------------------------

@pytest.fixture
def csirt_root():
    work = Path(tempfile.mkdtemp(prefix="intelmq-crossborder-init-"))
    work.chmod(0o755)
    yield work / "root"
    if not os.environ.get("CROSSBORDER_KEEP_WORKDIR"):
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.integration
def test_bots_started_with_intelmqctl_run(csirt_root):
    """init csirt, point its broker and bot state at this test's Redis database (what an admin
    sets for the local Redis), then `intelmqctl start`: every enabled bot runs, and an event put
    into the TLP expert's queue reaches the analysts' file and, redacted, the operator's file."""
    root = csirt_root
    proc = subprocess.run([CLI, "init", "csirt", "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runtime = written_runtime(root)
    glob = runtime.setdefault("global", {})
    for side in ("source", "destination"):
        glob[f"{side}_pipeline_db"] = REDIS_DB
    glob["statistics_database"] = REDIS_DB
    for conf in runtime.values():
        if "redis_cache_db" in conf.get("parameters", {}):
            conf["parameters"]["redis_cache_db"] = REDIS_DB
    files.atomic_write_text(root / "etc" / "runtime.yaml", yaml.safe_dump(runtime, sort_keys=False), mode=0o644)
    if intelmq_ids():
        os.chown(root / "etc" / "runtime.yaml", *intelmq_ids())
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB)
    enabled = [b for b, c in runtime.items() if b != "global" and c.get("enabled", True)]
    assert "exchange-collector" not in enabled and len(enabled) == 7
    r = inst.redis()
    for name in r.scan_iter(match="crossborder:*"):
        r.delete(name)
    inst.clear_queues()
    event = {"__type": "Event", "classification.taxonomy": "information-gathering", "classification.type": "scanner",
             "source.ip": "203.0.113.50", "sharing.tlp": "GREEN", "provenance.origin_hub": "at-hub",
             "provenance.origin_country": "AT", "provenance.hub_path": "at-hub",
             "provenance.event_uuid": "00000000-0000-4000-8000-0000000000a1", "extra.note": "for the analysts only"}
    output = root / "var" / "lib" / "output"

    def lines(name):         # complete lines only: the output may be writing the next one
        path = output / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []
    try:
        inst.ctl("start")
        def all_running():
            status = inst.status()
            return status if all(status.get(b) == "running" for b in enabled) else None
        status = wait_until(all_running, 60,
                            message=lambda: f"all bots running: {inst.status()}; logs in {inst.log_dir}")
        assert status.get("exchange-collector") != "running"
        r.lpush("tlp-expert-queue", json.dumps(event))
        wait_until(lambda: lines("soc") and lines("at-grid-operator"), 60,
                   message=lambda: f"the event in both files; queues {inst.queue_lengths()}; logs in {inst.log_dir}")
        assert all_running(), inst.status()
    finally:
        inst.stop()
        inst.clear_queues()
    soc, operator = lines("soc"), lines("at-grid-operator")
    assert [e["source.ip"] for e in soc] == [e["source.ip"] for e in operator] == ["203.0.113.50"]
    assert soc[0]["extra.note"] == "for the analysts only"
    assert not [k for k in operator[0] if k.startswith("extra.")]
    assert (root / "var" / "lib" / "audit" / "router-audit.jsonl").exists()


# --- IntelMQ's second file layout: INTELMQ_PATHS_NO_OPT (/etc/intelmq, /var/lib/intelmq ...) -------

@pytest.mark.parametrize("relative, opt, lsb", [
    ("etc", "etc", "etc/intelmq"), ("etc/exchange/trust.yaml", "etc/exchange/trust.yaml",
                                    "etc/intelmq/exchange/trust.yaml"),
    ("var/lib/bots", "var/lib/bots", "var/lib/intelmq/bots"), ("var/log", "var/log", "var/log/intelmq"),
    ("var/run", "var/run", "var/run/intelmq"), ("var/spool/feed", "var/spool/feed", "var/spool/intelmq/feed"),
    ("var/lib/state.json", "var/lib/state.json", "var/lib/intelmq/state.json"),
    ("var/csaf", "var/csaf", "var/lib/intelmq/csaf")])
def test_layout_places_template_paths(relative, opt, lsb):
    assert deploy.Layout("opt", Path("/srv/i")).place(relative) == Path("/srv/i") / opt
    assert deploy.Layout("lsb", Path("/srv/p")).place(relative) == Path("/srv/p") / lsb


def test_layout_standard_folders_are_intelmqs_own():
    """The folders of each layout are those IntelMQ itself computes (intelmq/__init__.py), read
    from a fresh interpreter with the environment of that layout."""
    code = ("import intelmq, json; print(json.dumps([intelmq.CONFIG_DIR, intelmq.DEFAULT_LOGGING_PATH, "
            "intelmq.VAR_RUN_PATH, intelmq.VAR_STATE_PATH, intelmq.STATE_FILE_PATH]))")
    base = {k: v for k, v in os.environ.items() if k not in ("INTELMQ_ROOT_DIR", "INTELMQ_PATHS_NO_OPT", "ROOT_DIR")}
    for env in ({"INTELMQ_ROOT_DIR": "/srv/i"}, {"INTELMQ_PATHS_NO_OPT": "1", "ROOT_DIR": "/srv/p"},
                {"INTELMQ_PATHS_NO_OPT": "1"}, {}, {"INTELMQ_ROOT_DIR": "/srv/i", "INTELMQ_PATHS_NO_OPT": "1"},
                {"INTELMQ_ROOT_DIR": "", "INTELMQ_PATHS_NO_OPT": "1"}):
        proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                              timeout=60, cwd="/")
        assert proc.returncode == 0, proc.stderr
        theirs = [Path(p) for p in json.loads(proc.stdout)]
        layout = deploy.layout_from_environment(env)
        assert layout.standard_folders() + [layout.state_file] == theirs, env


def test_init_in_the_lsb_layout_is_read_by_intelmq(intelmq_workdir, capsys):
    """--layout lsb: everything under PREFIX/etc/intelmq and PREFIX/var/*/intelmq, nothing in the
    opt places; intelmq-crossborder check passes, and intelmqctl run with INTELMQ_PATHS_NO_OPT and
    ROOT_DIR (no INTELMQ_ROOT_DIR) finds the runtime, the harmonization and the state file."""
    prefix = intelmq_workdir / "prefix"
    status, out, err = do_init(capsys, "national-hub", "--layout", "lsb", "--root", prefix)
    assert status == 0, err
    etc = prefix / "etc" / "intelmq"
    runtime = yaml.safe_load((etc / "runtime.yaml").read_text("utf-8"))
    assert not (prefix / "etc" / "runtime.yaml").exists() and not (prefix / "var" / "lib" / "bots").exists()
    assert sorted(p.name for p in prefix.iterdir()) == ["etc", "var"]
    assert sorted(p.name for p in (prefix / "etc").iterdir()) == ["intelmq"]
    for top in (prefix / "var").iterdir():         # var/lib/intelmq, var/log/intelmq, var/spool/intelmq ...
        assert [p.name for p in top.iterdir()] == ["intelmq"], top
    paths = [s for s in all_strings(runtime) if s.startswith(str(prefix))]
    assert paths and not [s for s in paths if not any(s.startswith(str(prefix / "var" / d / "intelmq"))
                                                      for d in ("lib", "log", "run", "spool"))
                          and not s.startswith(str(etc))]
    assert {Path(c["parameters"]["agreements_dir"]).parent for b, c in runtime.items()
            if b != "global" and "agreements_dir" in c.get("parameters", {})} == {etc}
    # the same template in the opt layout, path for path
    opt = load_runtime(deploy.ROLES["national-hub"].directory / "runtime.yaml", Path("/R"))
    for bot_id, conf in runtime.items():
        for name, value in (conf.get("parameters", {}) if bot_id != "global" else {}).items():
            theirs = opt[bot_id]["parameters"][name]
            if isinstance(value, str) and value.startswith(str(prefix)) and name != "agreements_dir":
                relative = theirs[len("/R/"):]
                assert value == str(deploy.Layout("lsb", prefix).place(relative)) + \
                    ("/" if theirs.endswith("/") else ""), (bot_id, name)
    bundle.load_private_key(etc / "exchange" / "signing-key.pem")
    assert list(bundle.TrustStore.from_file(etc / "exchange" / "trust.yaml").peers) == ["at-hub"]
    assert harmonization.check(etc / "harmonization.conf") == []
    assert json.loads((prefix / "var" / "lib" / "intelmq" / "state.json").read_text())["upgrades"]
    assert f"INTELMQ_PATHS_NO_OPT=1 ROOT_DIR={prefix} intelmqctl check" in out
    proc = subprocess.run([CLI, "check", str(etc / "runtime.yaml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "No errors found." in proc.stdout, proc.stderr
    env = {k: v for k, v in os.environ.items() if k != "INTELMQ_ROOT_DIR"}
    env.update(INTELMQ_PATHS_NO_OPT="1", ROOT_DIR=str(prefix), PATH=str(BIN) + os.pathsep + env.get("PATH", ""))
    proc = subprocess.run([str(BIN / "intelmqctl"), "--type", "json", "check", "--no-connections"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=str(prefix))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["status"] == "success" and not [x for x in report["lines"] if x[0] == "error"], report
    proc = subprocess.run([str(BIN / "intelmqctl"), "--type", "json", "status"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=str(prefix))
    assert set(json.loads(proc.stdout)) == set(runtime) - {"global"}          # it read OUR runtime


def test_init_takes_intelmqs_layout_from_the_environment(intelmq_workdir, capsys, monkeypatch):
    monkeypatch.delenv("INTELMQ_ROOT_DIR", raising=False)
    monkeypatch.setenv("INTELMQ_PATHS_NO_OPT", "1")
    monkeypatch.setenv("ROOT_DIR", str(intelmq_workdir / "lsb"))
    status, out, err = do_init(capsys, "csirt")
    assert status == 0, err
    assert (intelmq_workdir / "lsb" / "etc" / "intelmq" / "runtime.yaml").exists() and "note:" not in out
    # INTELMQ_ROOT_DIR wins over INTELMQ_PATHS_NO_OPT, as in IntelMQ
    monkeypatch.setenv("INTELMQ_ROOT_DIR", str(intelmq_workdir / "opt"))
    status, out, err = do_init(capsys, "csirt")
    assert status == 0, err
    assert (intelmq_workdir / "opt" / "etc" / "runtime.yaml").exists()
    assert f"INTELMQ_ROOT_DIR={intelmq_workdir / 'opt'} intelmqctl start" in out
    # written somewhere intelmqctl of this environment does not read: said so, with the way to run it
    status, out, err = do_init(capsys, "csirt", "--layout", "lsb", "--root", intelmq_workdir / "elsewhere")
    assert status == 0, err
    assert (intelmq_workdir / "elsewhere" / "etc" / "intelmq" / "runtime.yaml").exists()
    assert f"note: intelmqctl in this environment reads {intelmq_workdir / 'opt' / 'etc' / 'runtime.yaml'}" in out
    # an existing lsb root is not overwritten without --force either
    monkeypatch.delenv("INTELMQ_ROOT_DIR")
    status, _out, err = do_init(capsys, "csirt")
    assert status == 2 and "exist" in err and "use --force" in err


def test_opt_layout_paths_are_the_templates_expanded(intelmq_workdir, capsys):
    """The default layout writes exactly the template's ${INTELMQ_ROOT_DIR} paths (trailing
    slashes included), as before the layouts."""
    root = intelmq_workdir / "root"
    assert do_init(capsys, "cross-border-hub", "--root", root)[0] == 0
    runtime = written_runtime(root)
    template = load_runtime(deploy.ROLES["cross-border-hub"].directory / "runtime.yaml", root)
    compared = 0
    for bot_id, conf in runtime.items():
        for name, value in (conf.get("parameters", {}) if bot_id != "global" else {}).items():
            if isinstance(value, str) and value.startswith(str(root)) and name != "agreements_dir":
                assert value == template[bot_id]["parameters"][name], (bot_id, name)
                compared += 1
    assert compared > 10


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(deploy.InitError, match="unknown layout 'debian'"):
        deploy.plan("csirt", tmp_path, layout="debian")


def test_without_root_init_targets_intelmqs_own_default(monkeypatch):
    """No --root, no IntelMQ variables: /opt/intelmq, as intelmqctl; --layout lsb alone: / (or ROOT_DIR)."""
    from types import SimpleNamespace

    from intelmq_crossborder.cli import init as init_cli
    for name in ("INTELMQ_ROOT_DIR", "INTELMQ_PATHS_NO_OPT", "ROOT_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert init_cli._target(SimpleNamespace(root=None, layout=None))[:2] == ("opt", Path("/opt/intelmq"))
    assert init_cli._target(SimpleNamespace(root=None, layout="lsb"))[:2] == ("lsb", Path("/"))
    monkeypatch.setenv("ROOT_DIR", "/srv/x")
    assert init_cli._target(SimpleNamespace(root=None, layout="lsb"))[:2] == ("lsb", Path("/srv/x"))
    monkeypatch.setenv("INTELMQ_PATHS_NO_OPT", "1")
    assert init_cli._target(SimpleNamespace(root=None, layout="opt"))[:2] == ("opt", Path("/opt/intelmq"))
    assert init_cli._target(SimpleNamespace(root="/r", layout=None))[:2] == ("lsb", Path("/r"))
    assert deploy.Layout("lsb", Path("/")).environment() == "INTELMQ_PATHS_NO_OPT=1"


def test_init_set_keeps_the_partner_taxii_route(intelmq_workdir, capsys):
    """With --set PARTNER_TAXII_URL the cross-border hub keeps its TAXII output, collector, route and
    agreement; a bad --set is refused with nothing written."""
    root = intelmq_workdir / "root"
    url = "https://taxii.partner.example/taxii2/"
    status, out, err = do_init(capsys, "cross-border-hub", "--root", root, "--set", f"PARTNER_TAXII_URL={url}")
    assert status == 0, err
    runtime = written_runtime(root)
    assert runtime["taxii-output-partner-cti"]["parameters"]["taxii_url"] == url
    assert runtime["router"]["parameters"]["destination_queues"]["partner-cti"] == ["taxii-output-partner-cti-queue"]
    assert (root / "etc" / "agreements" / "partner-cti.yaml").exists() and "left out" not in out
    for bad in ("PARTNER_TAXII_URL", "PARTNER_TAXII_URL= ", "INTELMQ_ROOT_DIR=/x", "9X=1"):
        status, out, err = do_init(capsys, "cross-border-hub", "--root", intelmq_workdir / "other", "--set", bad)
        assert status == 2 and "--set" in err and not (intelmq_workdir / "other" / "etc").exists(), bad
