#!/usr/bin/env python3
"""
Pack a staged tree into a FreeBSD pkg(8) archive, without pkg(8).

    mkpkg.py --name mcpgw --version 0.1.0 --origin security/mcpgw \\
             --comment "..." --desc-file pkg-descr [--message-file pkg-message] \\
             [--maintainer M] [--www URL] [--license BSD2CLAUSE] \\
             [--abi FreeBSD:14:amd64] [--prefix /usr/local] \\
             [--dep NAME:ORIGIN:VERSION ...] [--script post-install=FILE ...] \\
             [--dir /usr/local/etc/mcpgw=0700 ...] \\
             --root STAGEDIR --out DIR

Writes DIR/NAME-VERSION.pkg: a tar archive whose first members are +COMPACT_MANIFEST and
+MANIFEST (JSON, which pkg's UCL parser reads), followed by every file under STAGEDIR at
its install path, owned by root:wheel. Modes: 0755 for files in bin/, sbin/, etc/rc.d/ and
for files staged with an exec bit, 0644 for the rest. Folders are packed only when named by
--dir (the package's own folders, like a pkg-plist's @dir; 0755 unless a mode is given,
e.g. 0700 for a folder that will hold secrets); pkg creates other parents as it extracts.
Every file is listed in the manifest with "1$" + its SHA-256, which `pkg check -s` verifies.

The archive is xz-compressed: pkg detects the compression from the data (libarchive), so a
.pkg holding xz is accepted; pkg's own default, zstd, is not in Python's standard library.
Only regular files and directories are packed (no symlinks, no hard links). Stdlib only.
"""

import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import time

# pkg's arch string for an ABI: FreeBSD:14:amd64 -> freebsd:14:x86:64
ARCH_OF = {
    'amd64': 'x86:64',
    'i386': 'x86:32',
    'aarch64': 'aarch64:64',
    'armv7': 'armv7:32:el:eabi:hardfp',
    'powerpc64': 'powerpc:64:eb',
    'powerpc64le': 'powerpc:64:el',
    'riscv64': 'riscv:64',
}

EXEC_DIRS = ('bin/', 'sbin/', 'etc/rc.d/', 'libexec/')


def arch_of(abi):
    parts = abi.split(':')
    if len(parts) != 3 or parts[0] != 'FreeBSD' or parts[2] not in ARCH_OF:
        raise SystemExit('mkpkg: --abi %r is not like FreeBSD:14:amd64' % abi)
    return 'freebsd:%s:%s' % (parts[1], ARCH_OF[parts[2]])


def walk(root):
    """(install path, staged path, is_dir) for everything under root, parents first, sorted."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        if rel != '.':
            out.append(('/' + rel, folder, True))
        for name in sorted(files):
            staged = os.path.join(folder, name)
            if not stat.S_ISREG(os.lstat(staged).st_mode):
                raise SystemExit('mkpkg: %s is not a regular file: only files and folders are packed' % staged)
            out.append(('/' + os.path.relpath(staged, root), staged, False))
    return out


def file_mode(path, staged, prefix):
    rel = path[len(prefix):].lstrip('/') if path.startswith(prefix + '/') else path.lstrip('/')
    if rel.startswith(EXEC_DIRS) or os.stat(staged).st_mode & stat.S_IXUSR:
        return 0o755
    return 0o644


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 16), b''):
            digest.update(block)
    return digest.hexdigest()


def read_message(path):
    """A pkg-message: plain text, or the ports' UCL form, whose text sits between <<EOM and EOM."""
    text = open(path, encoding='utf-8').read()
    if '<<EOM' in text:
        text = text.split('<<EOM', 1)[1].split('\nEOM', 1)[0]
    return text.strip('\n')


def parse_args(argv):
    p = argparse.ArgumentParser(description='Pack a staged tree into a FreeBSD .pkg')
    p.add_argument('--name', required=True)
    p.add_argument('--version', required=True)
    p.add_argument('--origin', required=True)
    p.add_argument('--comment', required=True)
    p.add_argument('--desc-file', required=True)
    p.add_argument('--message-file')
    p.add_argument('--maintainer', default='mcpgw@example.org')
    p.add_argument('--www', default='https://example.org/mcpgw')
    p.add_argument('--license', default='BSD2CLAUSE')
    p.add_argument('--abi', default='FreeBSD:14:amd64')
    p.add_argument('--prefix', default='/usr/local')
    p.add_argument('--dep', action='append', default=[], metavar='NAME:ORIGIN:VERSION')
    p.add_argument('--script', action='append', default=[], metavar='PHASE=FILE',
                   help='e.g. post-install=FILE (sh script run by pkg after install)')
    p.add_argument('--dir', action='append', default=[], metavar='PATH[=MODE]',
                   help='a folder the package owns, with its mode (default 0755)')
    p.add_argument('--root', required=True)
    p.add_argument('--out', required=True)
    return p.parse_args(argv)


def main(argv):
    a = parse_args(argv)
    prefix = a.prefix.rstrip('/')
    entries = walk(a.root)
    if not entries:
        raise SystemExit('mkpkg: %s is empty' % a.root)
    for path, _, _ in entries:
        if not (path == prefix or path.startswith(prefix + '/') or prefix.startswith(path + '/')):
            raise SystemExit('mkpkg: %s is outside the prefix %s' % (path, prefix))

    dir_modes = {}
    staged_dirs = {path for path, _, is_dir in entries if is_dir}
    for item in a.dir:
        path, _, mode = item.partition('=')
        path = path.rstrip('/')
        if path not in staged_dirs or not path.startswith(prefix + '/'):
            raise SystemExit('mkpkg: --dir %s is not a staged folder under %s' % (path, prefix))
        dir_modes[path] = int(mode or '755', 8)

    deps = {}
    for dep in a.dep:
        parts = dep.split(':')
        if len(parts) != 3:
            raise SystemExit('mkpkg: --dep %r is not NAME:ORIGIN:VERSION' % dep)
        deps[parts[0]] = {'origin': parts[1], 'version': parts[2]}

    scripts = {}
    for item in a.script:
        phase, _, path = item.partition('=')
        if phase not in ('pre-install', 'post-install', 'pre-deinstall', 'post-deinstall'):
            raise SystemExit('mkpkg: unknown script phase %r' % phase)
        scripts[phase] = open(path, encoding='utf-8').read()

    files, directories, flatsize = {}, {}, 0
    for path, staged, is_dir in entries:
        if is_dir:
            if path in dir_modes:
                directories[path] = 'y'
        else:
            files[path] = '1$' + sha256(staged)
            flatsize += os.path.getsize(staged)

    manifest = {
        'name': a.name,
        'origin': a.origin,
        'version': a.version,
        'comment': a.comment,
        'maintainer': a.maintainer,
        'www': a.www,
        'abi': a.abi,
        'arch': arch_of(a.abi),
        'prefix': prefix,
        'flatsize': flatsize,
        'licenselogic': 'single',
        'licenses': [a.license],
        'desc': open(a.desc_file, encoding='utf-8').read().rstrip('\n'),
        'categories': [a.origin.split('/')[0]],
        'deps': deps,
    }
    if a.message_file:
        manifest['messages'] = [{'message': read_message(a.message_file)}]
    compact = dict(manifest)
    manifest['files'] = files
    manifest['directories'] = directories
    if scripts:
        manifest['scripts'] = scripts

    os.makedirs(a.out, exist_ok=True)
    target = os.path.join(a.out, '%s-%s.pkg' % (a.name, a.version))
    now = int(time.time())

    def info(name, size, mode, kind=tarfile.REGTYPE):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.type, ti.mtime = size, mode, kind, now
        ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 'root', 'wheel'
        return ti

    with tarfile.open(target, 'w:xz', format=tarfile.PAX_FORMAT) as tar:
        for name, doc in (('+COMPACT_MANIFEST', compact), ('+MANIFEST', manifest)):
            data = json.dumps(doc, indent=1, sort_keys=True).encode('utf-8')
            tar.addfile(info(name, len(data), 0o644), io.BytesIO(data))
        for path, staged, is_dir in entries:
            if is_dir:
                if path in dir_modes:
                    tar.addfile(info(path, 0, dir_modes[path], tarfile.DIRTYPE))
            else:
                with open(staged, 'rb') as handle:
                    tar.addfile(info(path, os.path.getsize(staged), file_mode(path, staged, prefix)), handle)
    print('mkpkg: wrote %s (%d files, %d bytes unpacked)' % (target, len(files), flatsize))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
