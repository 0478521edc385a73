#!/usr/local/bin/python3
"""
Export the certificate chosen in Services > MCP Gateway from config.xml to PEM files.

    export_cert.py [--config /conf/config.xml] [--out /usr/local/etc/mcpgw]

OPNsense keeps certificates in config.xml as <cert> entries (refid, base64 PEM in <crt> and
<prv>, <caref> naming the issuing <ca>). The plugin's model stores only the refid
(OPNsense/mcpgw/general/certificate). This writes:

    cert.pem   the certificate followed by its issuers, as far as config.xml holds them
    key.pem    its private key

both 0600 and replaced atomically, so the gateway never reads half a file. With no
certificate chosen, stale cert.pem/key.pem are removed (the rendered mcpgw.toml then names
none). Exits 1 with a message when the chosen certificate is missing or has no key.
"""

import argparse
import base64
import os
import sys
import tempfile
import xml.etree.ElementTree as ET


def text(node, tag):
    found = node.find(tag)
    return (found.text or '').strip() if found is not None and found.text else ''


def pem(b64, what):
    try:
        data = base64.b64decode(b64, validate=False).decode('ascii')
    except (ValueError, UnicodeDecodeError):
        raise SystemExit('export_cert: %s is not base64-encoded PEM in config.xml' % what)
    return data if data.endswith('\n') else data + '\n'


def write_private(path, content):
    folder = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-')
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as out:
            out.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--config', default='/conf/config.xml')
    parser.add_argument('--out', default='/usr/local/etc/mcpgw')
    args = parser.parse_args()

    root = ET.parse(args.config).getroot()
    refid = text(root, 'OPNsense/mcpgw/general/certificate')
    cert_path = os.path.join(args.out, 'cert.pem')
    key_path = os.path.join(args.out, 'key.pem')
    if not refid:
        for path in (cert_path, key_path):
            if os.path.exists(path):
                os.unlink(path)
        return 0

    certs = {text(c, 'refid'): c for c in root.findall('cert')}
    cas = {text(c, 'refid'): c for c in root.findall('ca')}
    cert = certs.get(refid)
    if cert is None:
        print('export_cert: certificate %s is not in System: Trust: Certificates' % refid, file=sys.stderr)
        return 1
    if not text(cert, 'prv'):
        print('export_cert: certificate %s (%s) has no private key on this firewall'
              % (refid, text(cert, 'descr')), file=sys.stderr)
        return 1

    chain = [pem(text(cert, 'crt'), 'certificate %s' % refid)]
    seen = set()
    caref = text(cert, 'caref')
    while caref and caref in cas and caref not in seen:
        seen.add(caref)
        ca = cas[caref]
        if text(ca, 'crt'):
            chain.append(pem(text(ca, 'crt'), 'CA %s' % caref))
        caref = text(ca, 'caref')

    os.makedirs(args.out, mode=0o700, exist_ok=True)
    write_private(cert_path, ''.join(chain))
    write_private(key_path, pem(text(cert, 'prv'), 'key of certificate %s' % refid))
    return 0


if __name__ == '__main__':
    sys.exit(main())
