#!/usr/bin/env python3
"""
Render the os-mcpgw templates the way OPNsense's configd does, from sample config.xml files,
and check what comes out.

    test_templates.py --mcpgw BINARY [--keep DIR]

configd (opnsense/core, src/opnsense/service/modules) reads /conf/config.xml into nested
dicts: an element with children becomes a dict, a leaf its text; an empty leaf is left out;
a tag that repeats becomes a list, so an ArrayField with ONE item is a dict and with several
a list (templates use helpers.toList); an element's attributes are added to its dict as
"@name" keys (ArrayField items carry "@uuid"); every uuid-tagged item is also indexed under
"__uuid__". Templates are rendered with trim_blocks and the "do" and "loopcontrols"
extensions, and a `helpers` object; each output file gets the mode of its folder minus the
exec bits. The loader, the helpers and the writer below mimic that (written for this test).

Per variant (minimal, full, disabled, ipv6):
  - every +TARGETS entry renders; mcpgw.toml parses with tomllib and holds what the model says
    (awkward strings round-trip exactly), rc.conf.d enables or disables the service,
    opnsense.env parses back (with the rules of mcpgw's env_file reader) to the API settings;
  - the plugin's export_cert.py writes cert.pem/key.pem from the config's trust store;
  - `mcpgw check -c` accepts the rendered mcpgw.toml (it loads the certificate and key);
  - rendered files under a 0700 folder come out 0600.
Then setup.sh is run with a stand-in rc.d script: it must reload when only the policy
changed and restart when the upstream changed.
"""

import argparse
import collections
import copy
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, '..', '..'))
PLUGIN_SRC = os.path.join(TOP, 'freebsd', 'os-mcpgw', 'src')
TEMPLATES = os.path.join(PLUGIN_SRC, 'opnsense', 'service', 'templates')
SCRIPTS = os.path.join(PLUGIN_SRC, 'opnsense', 'scripts', 'OPNsense', 'McpGw')

checks = 0


def ok(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


# ------------------------------------------------------------------------------------------
# configd's view of config.xml

def load_config(path):
    uuids, uuid_tags = {}, {}

    def walk(node):
        children = list(node)
        if not children:
            return node.text
        out = collections.OrderedDict()
        for child in children:
            content = walk(child)
            if isinstance(content, collections.OrderedDict):
                for key, value in child.attrib.items():
                    content['@' + key] = value
            if 'uuid' in child.attrib:
                uuids[child.attrib['uuid']] = content
                uuid_tags[child.attrib['uuid']] = child.tag
            if child.tag in out:
                if not isinstance(out[child.tag], list):
                    out[child.tag] = [copy.deepcopy(out[child.tag])]
                if content is not None:
                    out[child.tag].append(content)
            elif content is not None:
                out[child.tag] = content
        return out

    data = walk(ET.parse(path).getroot())
    data['__uuid__'] = uuids
    data['__uuid_tags__'] = uuid_tags
    return data


class Helpers:
    """The template helpers configd offers, as far as our templates may use them."""

    def __init__(self, data):
        self._data = data

    def getNodeByTag(self, tag):
        node = self._data
        for part in tag.split('.'):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return None
        return node

    def exists(self, tag):
        return bool(self.getNodeByTag(tag))

    def empty(self, tag):
        node = self.getNodeByTag(tag)
        if node is None or len(node) == 0:
            return True
        return hasattr(node, 'strip') and node.strip() in ('', '0')

    def toList(self, tag, sortBy=None, sortAs=None):
        node = self.getNodeByTag(tag)
        if node is None:
            return []
        items = node if isinstance(node, list) else [node]
        if sortBy is None:
            return items
        if sortAs == 'int':
            return sorted(items, key=lambda d: int(d[sortBy]))
        return sorted(items, key=lambda d: d[sortBy])

    def getUUID(self, uuid):
        return self._data['__uuid__'].get(uuid, {})


def render_module(config, module, root):
    """Renders templates/<module>/+TARGETS into root; returns {template: output path}."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             extensions=['jinja2.ext.do', 'jinja2.ext.loopcontrols'])
    out = {}
    with open(os.path.join(TEMPLATES, module, '+TARGETS')) as handle:
        for line in handle:
            if ':' not in line or line.strip().startswith('#'):
                continue
            source, target = [p.strip() for p in line.split(':', 1)]
            data = copy.deepcopy(config)
            data['TARGET_FILTERS'] = {}
            env.globals['helpers'] = Helpers(data)
            content = env.get_template('%s/%s' % (module, source)).render(data)
            path = root + target
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(content)
                if content and not content.endswith('\n'):
                    f.write('\n')
            folder_mode = stat.S_IMODE(os.lstat(os.path.dirname(path)).st_mode)
            os.chmod(path, folder_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
            out[source] = path
    return out


def read_env_file(path):
    """mcpgw's env_file rules (src/config.rs read_env_file), for reading back what we wrote."""
    env = {}
    for line in open(path, encoding='utf-8').read().split('\n'):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('export '):
            line = line[len('export '):]
        key, value = line.split('=', 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        env[key] = value
    return env


# ------------------------------------------------------------------------------------------
# sample configurations

AWKWARD_SECRET = 'se"cr\\et=\'x\' $HOME #not-a-comment ü'
AWKWARD_KEY = '"quoted"\\back\\slash'
AWKWARD_REASON = 'Ask the "net" team \\ on-call; tab\there 😀'
AWKWARD_ARG = '/opt/opnsense mcp/dist/index.js'
HASH_A = 'a' * 64
HASH_B = '0123456789ABCDEF' * 4


def make_cert(folder, name):
    key, crt = os.path.join(folder, name + '.key'), os.path.join(folder, name + '.crt')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                    '-nodes', '-keyout', key, '-out', crt, '-days', '30', '-subj', '/CN=' + name],
                   check=True, capture_output=True)
    import base64
    return (base64.b64encode(open(crt, 'rb').read()).decode(),
            base64.b64encode(open(key, 'rb').read()).decode())


def x(tag, text=None, children=(), **attrib):
    node = ET.Element(tag, {k: v for k, v in attrib.items()})
    if text is not None:
        node.text = text
    for child in children:
        node.append(child)
    return node


def fields(**values):
    return [x(k, v) for k, v in values.items()]


def config_xml(path, general, upstream, policy, identities=(), rules=(), syslog=None, certs=(), cas=()):
    root = x('opnsense')
    root.append(x('system', children=fields(hostname='fw', domain='example.net')))
    for refid, descr, crt, prv, caref in certs:
        root.append(x('cert', uuid='c0ffee00-0000-4000-8000-%012d' % len(root),
                      children=fields(refid=refid, descr=descr, crt=crt, prv=prv, caref=caref)))
    for refid, descr, crt in cas:
        root.append(x('ca', children=fields(refid=refid, descr=descr, crt=crt, prv='')))
    mcpgw = x('mcpgw', version='0.1.0', children=[
        x('general', children=fields(**general)),
        x('upstream', children=fields(**upstream)),
        x('syslog', children=fields(**(syslog or {'log_arguments': ''}))),
        x('policy', children=fields(**policy)),
        x('identities', children=[x('identity', uuid=u, children=fields(**f)) for u, f in identities]),
        x('rules', children=[x('rule', uuid=u, children=fields(**f)) for u, f in rules]),
    ])
    root.append(x('OPNsense', children=[mcpgw]))
    ET.ElementTree(root).write(path, encoding='utf-8', xml_declaration=True)


def variants(tmp):
    crt, prv = make_cert(tmp, 'fw.example.net')
    ca_crt, _ = make_cert(tmp, 'unused-ca')
    certs = [('5f0a1b2c3d4e5', 'MCP gateway', crt, prv, 'ca01')]
    cas = [('ca01', 'Local CA', ca_crt)]
    base_upstream = dict(command='/usr/local/bin/node', args='/usr/local/lib/opnsense-mcp/dist/index.js',
                         opnsense_host='https://127.0.0.1', api_key='', api_secret='', verify_ssl='1')
    yield 'minimal', dict(
        general=dict(enabled='1', listen_address='127.0.0.1', listen_port='8443', certificate=''),
        upstream=base_upstream,
        policy=dict(default='deny', default_reason='', risk_read='', risk_write='', risk_execute='',
                    risk_destructive=''),
        identities=[('11111111-1111-4111-8111-111111111111',
                     dict(enabled='1', name='agent', token_sha256=HASH_A, description=''))],
    ), dict(address=['127.0.0.1:8443'], tls=False, identities=['agent'], tools={}, enabled=True)
    yield 'full', dict(
        general=dict(enabled='1', listen_address='0.0.0.0', listen_port='9443', certificate='5f0a1b2c3d4e5',
                     workers='2'),
        upstream=dict(command='/usr/local/bin/node', args='--max-old-space-size=256\r\n' + AWKWARD_ARG + '\r\n\r\n',
                      opnsense_host='https://192.0.2.1:4443', api_key=AWKWARD_KEY, api_secret=AWKWARD_SECRET,
                      verify_ssl='0'),
        syslog=dict(log_arguments='interface,description'),
        policy=dict(default='allow', default_reason='Not on the list "yet"', risk_read='allow', risk_write='deny',
                    risk_execute='hide', risk_destructive='hide'),
        identities=[
            ('22222222-2222-4222-8222-222222222222',
             dict(enabled='1', name='claude@ops', token_sha256=HASH_A, description='Claude "ops"')),
            ('33333333-3333-4333-8333-333333333333',
             dict(enabled='1', name='ci.bot-2', token_sha256=HASH_B, description='')),
            ('44444444-4444-4444-8444-444444444444',
             dict(enabled='1', name='no-token-yet', token_sha256='', description='')),
            ('55555555-5555-4555-8555-555555555555',
             dict(enabled='0', name='retired', token_sha256='b' * 64, description='')),
        ],
        rules=[
            ('66666666-6666-4666-8666-666666666666',
             dict(enabled='1', tool='firewall_list_rules', action='allow', reason='', limit_max='30',
                  limit_window='minute', limit_scope='identity', description='')),
            ('77777777-7777-4777-8777-777777777777',
             dict(enabled='1', tool='system_reboot', action='deny', reason=AWKWARD_REASON, limit_max='',
                  limit_window='minute', limit_scope='identity', description='')),
            ('88888888-8888-4888-8888-888888888888',
             dict(enabled='1', tool='configure', action='hide', reason='', limit_max='',
                  limit_window='minute', limit_scope='identity', description='')),
            # deny with a leftover limit: the template drops the limit, as the model would refuse it
            ('99999999-9999-4999-8999-999999999999',
             dict(enabled='1', tool='ssh.exec/cmd', action='deny', reason='', limit_max='5',
                  limit_window='hour', limit_scope='global', description='')),
            ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
             dict(enabled='1', tool='nat_list', action='allow', reason='', limit_max='100',
                  limit_window='day', limit_scope='global', description='')),
            ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
             dict(enabled='0', tool='disabled_tool', action='allow', reason='', limit_max='',
                  limit_window='minute', limit_scope='identity', description='')),
        ],
        certs=certs, cas=cas,
    ), dict(address=['0.0.0.0:9443'], tls=True, identities=['claude@ops', 'ci.bot-2'],
            tools={'firewall_list_rules': {'action': 'allow',
                                           'limits': [{'max': 30, 'per': 'minute', 'scope': 'identity'}]},
                   'system_reboot': {'action': 'deny', 'reason': AWKWARD_REASON},
                   'configure': {'action': 'hide'},
                   'ssh.exec/cmd': {'action': 'deny'},
                   'nat_list': {'action': 'allow', 'limits': [{'max': 100, 'per': 'day', 'scope': 'global'}]}},
            enabled=True)
    yield 'disabled', dict(
        general=dict(enabled='0', listen_address='0.0.0.0', listen_port='8443', certificate='5f0a1b2c3d4e5'),
        upstream=base_upstream,
        policy=dict(default='deny', default_reason='', risk_read='', risk_write='', risk_execute='',
                    risk_destructive=''),
        certs=certs, cas=cas,
    ), dict(address=['0.0.0.0:8443'], tls=True, identities=[], tools={}, enabled=False)
    yield 'dual-stack', dict(
        general=dict(enabled='1', listen_address='192.168.1.1,fd00::1', listen_port='8443',
                     certificate='5f0a1b2c3d4e5'),
        upstream=base_upstream,
        policy=dict(default='deny', default_reason='', risk_read='', risk_write='', risk_execute='',
                    risk_destructive=''),
        certs=certs, cas=cas,
    ), dict(address=['192.168.1.1:8443', '[fd00::1]:8443'], tls=True, identities=[], tools={}, enabled=True)
    yield 'ipv6', dict(
        general=dict(enabled='1', listen_address='::1', listen_port='8443', certificate=''),
        upstream=base_upstream,
        policy=dict(default='deny', default_reason='', risk_read='', risk_write='', risk_execute='',
                    risk_destructive=''),
    ), dict(address=['[::1]:8443'], tls=False, identities=[], tools={}, enabled=True)


# ------------------------------------------------------------------------------------------

def check_variant(name, spec, expect, tmp, mcpgw):
    folder = os.path.join(tmp, name)
    root = os.path.join(folder, 'root')
    etc = root + '/usr/local/etc/mcpgw'
    os.makedirs(etc)
    os.chmod(etc, 0o700)          # what the mcpgw package installs
    xml_path = os.path.join(folder, 'config.xml')
    config_xml(xml_path, **spec)
    config = load_config(xml_path)
    rendered = render_module(config, 'OPNsense/McpGw', root)
    ok(set(rendered) == {'rc.conf.d', 'mcpgw.toml', 'opnsense.env'}, '%s: +TARGETS renders three files' % name)

    for source, path in rendered.items():
        if path.startswith(etc):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            ok(mode == 0o600, '%s: %s is 0600 under a 0700 folder (is %o)' % (name, source, mode))

    rc = open(rendered['rc.conf.d']).read()
    ok(('mcpgw_enable="YES"' in rc) == expect['enabled'], '%s: rc.conf.d enable line: %r' % (name, rc))
    ok(('mcpgw_enable="NO"' in rc) == (not expect['enabled']), '%s: rc.conf.d disable line' % name)

    text = open(rendered['mcpgw.toml'], encoding='utf-8').read()
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AssertionError('%s: mcpgw.toml is not TOML: %s\n%s' % (name, e, text))
    ok(toml['listen']['address'] == expect['address'], '%s: listen.address %r' % (name, toml['listen']['address']))
    if expect['tls']:
        ok(toml['listen'].get('cert') == 'cert.pem' and toml['listen'].get('key') == 'key.pem',
           '%s: cert/key named' % name)
        ok('plaintext' not in toml['listen'], '%s: no plaintext with a certificate' % name)
    else:
        ok(toml['listen'].get('plaintext') is True and 'cert' not in toml['listen'], '%s: plaintext' % name)
    ok(toml['upstream']['env_file'] == 'opnsense.env', '%s: env_file' % name)
    ok([i['name'] for i in toml.get('identity', [])] == expect['identities'],
       '%s: identities %r' % (name, toml.get('identity')))
    for identity in toml.get('identity', []):
        ok(len(identity['token_sha256']) == 1 and identity['token_sha256'][0] == identity['token_sha256'][0].lower(),
           '%s: one lower-case hash per identity' % name)
    ok(toml['policy'].get('tools', {}) == expect['tools'], '%s: tools %s' % (name, json.dumps(toml['policy'].get('tools'))))

    env = read_env_file(rendered['opnsense.env'])
    up = spec['upstream']
    ok(env == {'OPNSENSE_HOST': up['opnsense_host'], 'OPNSENSE_API_KEY': up['api_key'],
               'OPNSENSE_API_SECRET': up['api_secret'],
               'OPNSENSE_VERIFY_SSL': 'false' if up['verify_ssl'] == '0' else 'true'},
       '%s: opnsense.env reads back as %r' % (name, env))

    if name == 'full':
        ok(toml['listen'].get('workers') == 2, 'full: listen.workers')
    else:
        ok('workers' not in toml['listen'], '%s: no workers line without the setting (mcpgw picks)' % name)
    if name == 'full':
        ok(toml['upstream']['args'] == ['--max-old-space-size=256', AWKWARD_ARG], 'full: args split per line')
        ok(toml['syslog']['log_arguments'] == ['interface', 'description'], 'full: log_arguments')
        ok(toml['policy']['default'] == 'allow' and toml['policy']['default_reason'] == 'Not on the list "yet"',
           'full: default and reason')
        ok('# [policy.risk]' in text and '# execute = "hide"' in text and '[policy.risk]\n' not in text.replace('# [policy.risk]', ''),
           'full: risk classes only as comments')
        ok("identity \"no-token-yet\" is left out" in text, 'full: identity without a token noted, not rendered')
        try:
            tomllib.loads('s = ' + json.dumps('😀'))
            ok(False, 'tojson output for non-BMP characters was expected to be invalid TOML')
        except tomllib.TOMLDecodeError:
            ok(True, 'tojson would write surrogate pairs TOML rejects: the template escapes by hand')

    # export the chosen certificate as setup.sh does on the box
    subprocess.run([sys.executable, os.path.join(SCRIPTS, 'export_cert.py'), '--config', xml_path, '--out', etc],
                   check=True)
    if expect['tls']:
        cert = open(os.path.join(etc, 'cert.pem')).read()
        ok(cert.count('BEGIN CERTIFICATE') == 2, '%s: cert.pem holds the certificate and its CA' % name)
        ok(stat.S_IMODE(os.stat(os.path.join(etc, 'key.pem')).st_mode) == 0o600, '%s: key.pem is 0600' % name)
    else:
        ok(not os.path.exists(os.path.join(etc, 'cert.pem')), '%s: no cert.pem without a certificate' % name)

    result = subprocess.run([mcpgw, 'check', '-c', rendered['mcpgw.toml']], capture_output=True, text=True)
    ok(result.returncode == 0, '%s: mcpgw check failed:\n%s%s\n--- mcpgw.toml\n%s' % (
        name, result.stdout, result.stderr, text))
    print('ok   %-8s rendered, parsed, read back; mcpgw check: %s' % (name, result.stdout.strip().split(': ', 1)[-1]))
    return xml_path, etc


def check_setup_sh(tmp, xml_path, etc):
    """setup.sh reload: SIGHUP when only the policy changed, restart when the upstream did."""
    calls = os.path.join(tmp, 'rc-calls')
    fake_rc = os.path.join(tmp, 'fake-rc')
    with open(fake_rc, 'w') as f:
        f.write('#!/bin/sh\necho "$1" >> %s\n' % calls)
    os.chmod(fake_rc, 0o755)
    env = dict(os.environ, MCPGW_ETC=etc, MCPGW_RC=fake_rc, MCPGW_CONFIG_XML=xml_path,
               MCPGW_STAMP=os.path.join(tmp, 'stamp'), MCPGW_PYTHON=sys.executable)
    setup = os.path.join(SCRIPTS, 'setup.sh')

    def run(*args):
        open(calls, 'w').close()
        subprocess.run([setup, *args], env=env, check=True)
        return open(calls).read().split()

    toml = os.path.join(etc, 'mcpgw.toml')
    ok(run() == [], 'setup.sh without arguments prepares only')
    ok(run('reload') == ['reload'], 'setup.sh reload: nothing moved, so SIGHUP')
    with open(toml, 'a') as f:
        f.write('# a policy change\n')
    ok(run('reload') == ['reload'], 'setup.sh reload: a policy change is a reload')
    text = open(toml).read().replace('env_file = "opnsense.env"', 'env_file = "opnsense.env"\ncall_timeout_ms = 5000')
    open(toml, 'w').write(text)
    ok(run('reload') == ['restart'], 'setup.sh reload: an upstream change is a restart')
    ok(run('reload') == ['reload'], 'setup.sh reload: and the next apply is a reload again')
    text = open(toml).read()
    workers = 'workers = 3' if 'workers = 2' in text else 'workers = 2'
    text = text.replace('workers = 2\n', '') if 'workers = 2' in text else text
    open(toml, 'w').write(text.replace('[listen]\n', '[listen]\n%s\n' % workers, 1))
    ok(run('reload') == ['restart'], 'setup.sh reload: new connection threads are a restart')
    text = open(toml).read()
    open(toml, 'w').write(text.replace('[syslog]\n', '[syslog]\n# a new log_arguments list\n', 1))
    ok(run('reload') == ['restart'], 'setup.sh reload: a [syslog] change is a restart')
    with open(os.path.join(etc, 'opnsense.env'), 'a') as f:
        f.write('OPNSENSE_API_KEY="rotated"\n')
    ok(run('reload') == ['restart'], 'setup.sh reload: a new API key is a restart')
    ok(stat.S_IMODE(os.stat(etc).st_mode) == 0o700, 'setup.sh keeps the folder 0700')
    print('ok   setup.sh decides reload vs restart from the rendered files')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--mcpgw', required=True, help='an mcpgw binary that runs here (for `mcpgw check`)')
    parser.add_argument('--keep', help='render into this folder and keep it')
    args = parser.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix='mcpgw-templates-')
    os.makedirs(tmp, exist_ok=True)
    try:
        last = None
        for name, spec, expect in variants(tmp):
            result = check_variant(name, spec, expect, tmp, args.mcpgw)
            if name == 'full':
                last = result
        check_setup_sh(tmp, *last)
    except AssertionError as e:
        print('FAIL %s' % e)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print('ok   test_templates.py: %d checks passed' % checks)
    return 0


if __name__ == '__main__':
    sys.exit(main())
