#!/usr/bin/env python3
"""
Open a .pkg made by scripts/mkpkg.py the way pkg(8) would read it, and check it.

    check_pkg.py PKG --name N --version V --origin O [--abi FreeBSD:14:amd64]
                 [--expect PATH[=MODE] ...] [--dep NAME ...]

Checks: the first two members are +COMPACT_MANIFEST and +MANIFEST, both JSON objects with
the fields pkg needs (name, origin, version, comment, maintainer, www, abi, arch, prefix,
flatsize, desc, deps, licenses); the compact manifest lists no files; every file member is
listed in "files" with "1$" + its SHA-256 and every listed file is in the archive; flatsize
is the sum of the file sizes; every path is absolute and under the prefix; owners are
root:wheel; each --expect path is present (with MODE when given, e.g. 0755 for the rc.d
script); each --dep is in "deps".
"""

import argparse
import hashlib
import json
import sys
import tarfile

REQUIRED = ('name', 'origin', 'version', 'comment', 'maintainer', 'www', 'abi', 'arch', 'prefix',
            'flatsize', 'desc', 'deps', 'licenselogic', 'licenses', 'categories')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('pkg')
    p.add_argument('--name', required=True)
    p.add_argument('--version', required=True)
    p.add_argument('--origin', required=True)
    p.add_argument('--abi', default='FreeBSD:14:amd64')
    p.add_argument('--expect', action='append', default=[])
    p.add_argument('--dep', action='append', default=[])
    a = p.parse_args()
    problems = []
    checks = 0

    def check(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            problems.append(what)

    with tarfile.open(a.pkg, 'r:*') as tar:
        members = tar.getmembers()
        check([m.name for m in members[:2]] == ['+COMPACT_MANIFEST', '+MANIFEST'],
              'first members are %r' % [m.name for m in members[:2]])
        compact = json.loads(tar.extractfile('+COMPACT_MANIFEST').read())
        manifest = json.loads(tar.extractfile('+MANIFEST').read())
        for field in REQUIRED:
            check(field in manifest, '+MANIFEST has no %s' % field)
            check(field in compact, '+COMPACT_MANIFEST has no %s' % field)
        check('files' not in compact, '+COMPACT_MANIFEST lists files')
        check(manifest.get('name') == a.name, 'name %r' % manifest.get('name'))
        check(manifest.get('version') == a.version, 'version %r' % manifest.get('version'))
        check(manifest.get('origin') == a.origin, 'origin %r' % manifest.get('origin'))
        check(manifest.get('abi') == a.abi, 'abi %r' % manifest.get('abi'))
        check(manifest.get('arch') == 'freebsd:14:x86:64' or not a.abi.endswith(':amd64'),
              'arch %r' % manifest.get('arch'))
        prefix = manifest.get('prefix', '')
        check(prefix == '/usr/local', 'prefix %r' % prefix)
        for dep in a.dep:
            check(dep in manifest.get('deps', {}), 'deps has no %s' % dep)

        listed = dict(manifest.get('files', {}))
        size = 0
        modes = {}
        for m in members[2:]:
            check(m.name.startswith(prefix + '/'), '%s is not under %s' % (m.name, prefix))
            check(m.uname == 'root' and m.gname == 'wheel' and m.uid == 0 and m.gid == 0,
                  '%s is owned by %s:%s' % (m.name, m.uname, m.gname))
            modes[m.name] = m.mode
            if m.isdir():
                check(m.name in manifest.get('directories', {}), 'folder %s not in directories' % m.name)
                continue
            check(m.isfile(), '%s is not a regular file' % m.name)
            data = tar.extractfile(m).read()
            size += len(data)
            want = listed.pop(m.name, None)
            check(want == '1$' + hashlib.sha256(data).hexdigest(), '%s: sum %r does not match' % (m.name, want))
        check(not listed, 'listed but not in the archive: %s' % sorted(listed))
        check(manifest.get('flatsize') == size, 'flatsize %r, files hold %d' % (manifest.get('flatsize'), size))
        for item in a.expect:
            path, _, mode = item.partition('=')
            check(path in modes, '%s is missing' % path)
            if mode and path in modes:
                check(modes[path] == int(mode, 8), '%s has mode %o, not %s' % (path, modes[path], mode))

    name = a.pkg.rsplit('/', 1)[-1]
    if problems:
        for problem in problems:
            print('FAIL %s: %s' % (name, problem))
        return 1
    print('ok   %s: %d checks (manifests first, %d files with sums, paths, owners, modes, abi %s)'
          % (name, checks, len(manifest['files']), manifest['abi']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
