"""The demo consortium's key set-up (intelmq_crossborder.demo.crypto): a hybrid, encrypted link
between de-hub and fi-hub, Ed25519 and data in clear on every other link; bundles sealed with
the keys and trust stores it writes, through the exchange's own code, verify as reported."""
import json
import stat
from pathlib import Path

import pytest

from intelmq_crossborder.demo import crypto
from intelmq_crossborder.demo.consortium import default_members
from intelmq_crossborder.exchange import outgoing
from intelmq_crossborder.exchange.spool import Spool
from intelmq_crossborder.formats import bundle as b


def runtimes(members):
    out = {}
    for m in members:
        rt = {"exchange-collector": {"module": crypto.COLLECTOR_MODULE, "parameters": {"hub_id": m.name}}}
        for r in tuple(m.peers) + tuple(m.constituents):
            rt[f"exchange-output-{r}"] = {"module": crypto.OUTPUT_MODULE,
                                          "parameters": {"hub_id": m.name, "recipient": r}}
        out[m.name] = rt
    return out


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo-crypto")
    members = default_members(small=True)
    rts = runtimes(members)
    links = crypto.setup_keys(workdir, members, rts)
    return workdir, members, rts, links


def test_links_and_files(consortium):
    workdir, members, rts, links = consortium
    assert links["de-hub -> fi-hub"] == links["fi-hub -> de-hub"] == "hybrid+encrypted"
    assert {k for k, v in links.items() if v == "hybrid+encrypted"} == {"de-hub -> fi-hub", "fi-hub -> de-hub"}
    assert links["at-hub -> de-hub"] == links["de-hub -> at-hub"] == links["at-hub -> at-csirt"] == "ed25519"
    for hub in crypto.HYBRID:
        for name in ("signing-key-hybrid.pem", "decryption-key.pem", "signing-key-ed25519.pem"):
            assert stat.S_IMODE((workdir / hub / "etc" / "exchange" / name).stat().st_mode) == 0o600
    assert not (workdir / "at-hub" / "etc" / "exchange" / "decryption-key.pem").exists()
    de_out = rts["de-hub"]["exchange-output-fi-hub"]["parameters"]
    assert de_out["signing_key_file"].endswith("signing-key-hybrid.pem") and de_out["require_encryption"] is True
    assert rts["de-hub"]["exchange-output-at-hub"]["parameters"]["signing_key_file"].endswith("ed25519.pem")
    assert rts["fi-hub"]["exchange-collector"]["parameters"]["decryption_key_file"].endswith("decryption-key.pem")
    assert rts["at-hub"]["exchange-collector"]["parameters"]["decryption_key_file"] == ""
    # the output bot's own check accepts what was configured
    from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
    assert CrossBorderExchangeOutputBot.check(de_out) is None
    fi_trust = b.TrustStore.from_file(workdir / "fi-hub" / "etc" / "exchange" / "trust.yaml")
    assert fi_trust.required_algorithms("de-hub") == ("ed25519", "ml-dsa-65")
    assert fi_trust.required_algorithms("at-hub") == ("ed25519",)
    assert fi_trust.encryption_key("at-hub") is None and fi_trust.encryption_key("de-hub") is not None


def _seal(workdir, rts, sender, recipient, tmp_path):
    params = rts[sender][f"exchange-output-{recipient}"]["parameters"]
    keys = b.load_signing_keys(params["signing_key_file"])
    spool = Spool(tmp_path / f"spool-{sender}-{recipient}", tmp_path / "outbox", sender, recipient, keys,
                  encryption_key=lambda: outgoing.encryption_key_for(params["trust_store"], recipient,
                                                                     params["require_encryption"]))
    for i in range(3):
        spool.append(json.dumps({"sharing.tlp": "GREEN", "extra.n": i}).encode())
    path = spool.seal()
    inbox = workdir / recipient / "var" / "lib" / "exchange" / "import" / "archive"
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / path.name
    path.rename(target)
    return target


def test_bundles_verify_as_reported(consortium, tmp_path):
    workdir, members, rts, links = consortium
    hybrid = _seal(workdir, rts, "de-hub", "fi-hub", tmp_path)
    classic = _seal(workdir, rts, "fi-hub", "at-hub", tmp_path)
    with crypto.open_imported(hybrid, workdir / "fi-hub", "fi-hub") as opened:
        opened.verify_data()
        assert opened.manifest.format_version == "2.0" and opened.decrypted
        assert opened.verified_algorithms == ("ed25519", "ml-dsa-65")
    with crypto.open_imported(classic, workdir / "at-hub", "at-hub") as opened:
        opened.verify_data()
        assert opened.manifest.format_version == "1.0" and not opened.encrypted
    lines = crypto.link_lines({m.name: workdir / m.name for m in members})
    assert any(line.startswith("de-hub -> fi-hub: 1 bundle(s), 3 events, format 2.0, signed ed25519 + ml-dsa-65 "
                               "(hybrid, post-quantum), data encrypted") for line in lines), lines
    assert any(line.startswith("fi-hub -> at-hub: 1 bundle(s), 3 events, format 1.0, signed ed25519 (Ed25519 only), "
                               "data in clear") for line in lines), lines
    # de-hub requires both signatures of fi-hub: its PQ signature cannot be stripped on the way
    de_trust = b.TrustStore.from_file(Path(workdir) / "de-hub" / "etc" / "exchange" / "trust.yaml")
    assert de_trust.required_algorithms("fi-hub") == ("ed25519", "ml-dsa-65")


def test_consortium_hooks(tmp_path):
    """setup_consortium/consortium_links take the Consortium object as the lead's hook does."""
    from types import SimpleNamespace
    members = default_members(small=True)
    rts = runtimes(members)
    cons = SimpleNamespace(workdir=tmp_path, members=members,
                           instances={m.name: SimpleNamespace(runtime=rts[m.name], root=tmp_path / m.name)
                                      for m in members})
    links = crypto.setup_consortium(cons)
    assert links["fi-hub -> de-hub"] == "hybrid+encrypted"
    assert rts["fi-hub"]["exchange-output-de-hub"]["parameters"]["require_encryption"] is True
    assert crypto.consortium_links(cons) == []          # nothing imported yet
