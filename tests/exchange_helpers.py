"""Helpers for the exchange tests: keys, trust stores, tampered bundles, a throwaway mutual-TLS PKI."""
import datetime as dt
import gzip
import io
import ipaddress
import json
import tarfile
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.testing.http import LocalHTTPServer
from intelmq_crossborder.testing.polling import wait_until

COUNTRIES = {"de-hub": "DE", "fr-hub": "FR", "at-hub": "AT", "it-hub": "IT"}


def write_key(path, key=None):
    key = key or b.generate_private_key()
    Path(path).write_bytes(b.private_key_pem(key))
    return key


def write_trust(path, keys: dict, revoked=()):
    """keys: hub -> private key or list of private keys; revoked: key ids."""
    peers = {}
    for hub, ks in keys.items():
        ks = ks if isinstance(ks, list) else [ks]
        peers[hub] = {"country": COUNTRIES.get(hub), "keys": [
            {"algorithm": "ed25519", "public_key": b.public_key_b64(k),
             "revoked": b.key_id_of(k) in revoked, "revoked_reason": "key compromised" if
             b.key_id_of(k) in revoked else ""} for k in ks]}
    Path(path).write_text(yaml.safe_dump({"version": 1, "peers": peers}))
    return b.TrustStore.from_file(path)


def events(n, start=0, hub="de-hub", tlp="GREEN"):
    return [{"classification.type": "scanner", "classification.taxonomy": "information-gathering",
             "source.ip": f"198.51.{(i // 250) % 250}.{i % 250 + 1}", "sharing.tlp": tlp,
             "provenance.origin_hub": hub, "provenance.origin_country": COUNTRIES.get(hub, "DE"),
             "time.observation": "2026-11-20T01:02:03+00:00", "extra.n": i} for i in range(start, start + n)]


def bundle_numbers(folder, trust, recipient):
    """``extra.n`` of every event in the bundles of ``folder``, in sequence order; each bundle verified."""
    out = []
    for path in sorted(Path(folder).glob("*.xbundle")):
        with b.open_bundle(path, trust, recipient) as opened:
            opened.verify_data()
            out.extend(e["extra.n"] for _, e in b.iter_events(opened))
    return out


def read_members(path):
    with tarfile.open(path, "r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_members(path, members):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def rewrite(path, manifest=None, data=None, signatures=None, out=None):
    """Rewrite a bundle; each argument is a function bytes -> bytes for that member."""
    members = dict(read_members(path))
    for name, fn in (("manifest.json", manifest), ("data.jsonl.gz", data), ("signatures.json", signatures)):
        if fn:
            members[name] = fn(members[name])
    target = Path(out or path)
    write_members(target, [(n, members[n]) for n in b.MEMBERS])
    return target


def edit_json(fn):
    def inner(raw):
        doc = json.loads(raw)
        fn(doc)
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    return inner


def replace_data_lines(fn):
    def inner(raw):
        lines = gzip.decompress(raw).splitlines()
        return gzip.compress(b"\n".join(fn(lines)) + b"\n")
    return inner


def resign(path, key, manifest_fn):
    """Change the manifest and sign it again with ``key`` (a forger with a key)."""
    members = dict(read_members(path))
    manifest = edit_json(manifest_fn)(members["manifest.json"])
    import base64
    sig = {"signatures": [{"algorithm": "ed25519", "key_id": b.key_id_of(key),
                           "value": base64.b64encode(key.sign(manifest)).decode()}]}
    members["manifest.json"] = manifest
    members["signatures.json"] = json.dumps(sig).encode()
    write_members(path, [(n, members[n]) for n in b.MEMBERS])


# --- throwaway PKI for mutual TLS ------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory):
    """CA, server cert for 127.0.0.1/localhost, client cert; returns a dict of file paths."""
    d = Path(directory)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test exchange CA")).issuer_name(_name("test exchange CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": d / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cn, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(later)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cp, kp = d / f"{cn}.crt", d / f"{cn}.key"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return cp, kp

    paths["server_cert"], paths["server_key"] = leaf(
        "server", ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths["client_cert"], paths["client_key"] = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH)
    return {k: str(v) for k, v in paths.items()}


class ExchangeServer(LocalHTTPServer):
    """HTTPS server requiring a client certificate: PUT stores a bundle, GET / lists (nginx autoindex json)."""

    def __init__(self, pki, directory):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
        ctx.load_verify_locations(pki["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        super().__init__(tls=ctx)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.requests = []

    @property
    def url(self) -> str:
        return self.base_url + "/exchange"

    def handler_class(self) -> type:
        import http.server

        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                name = self.path.rsplit("/", 1)[-1]
                length = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(length)
                server_self.requests.append(("PUT", name, self.connection.getpeercert()))
                (server_self.dir / name).write_bytes(data)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                server_self.requests.append(("GET", self.path, self.connection.getpeercert()))
                if self.path.endswith("/"):
                    body = json.dumps([{"name": p.name, "type": "file", "size": p.stat().st_size}
                                       for p in sorted(server_self.dir.iterdir())]).encode()
                else:
                    target = server_self.dir / self.path.rsplit("/", 1)[-1]
                    if not target.exists():
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def wait_for(cond, timeout, what):
    """:func:`intelmq_crossborder.testing.polling.wait_until` every 0.2 s, naming ``what`` on a timeout."""
    wait_until(cond, timeout, interval=0.2, message=what)
