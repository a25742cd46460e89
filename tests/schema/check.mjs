#!/usr/bin/env node
// Keeps the C validator and the JSON Schemas in schema/ in agreement.
//
//   node check.mjs ROLLD SOURCE_DIR
//
// For every service spec in examples/services/*/ and tests/fixtures/{valid,invalid}/
// it runs `rolld validate FILE` and ajv (draft 2020-12) with schema/service.schema.json
// on the same YAML, loaded with the yaml package (YAML 1.2 core schema), and fails when
// the verdicts differ. Every invalid fixture starts with `# expect: LINE:COL FIELD` and
// rolld's stderr must contain `FILE:LINE:COL: FIELD: `; an optional `# message: TEXT`
// line must appear in stderr too. Policies (policies/*.yaml and tests/fixtures/policies/)
// are checked the same way against schema/policy.schema.json, with rolld loading them
// through `rolld plan EMPTY_DIR --policies DIR`. Agent configs (examples/config/rolld.yaml
// and tests/fixtures/config/) are checked against schema/rolld.schema.json, rolld judging
// them with `rolld run --config FILE --check` (exit 0 and `FILE: valid`, or 2). The JSON
// of `rolld plan --format json` is validated against schema/plan.schema.json. Hostile
// inputs (alias bombs, deep nesting, a 2 MiB file, ...) are generated in a temporary
// directory.
//
// Fixtures JSON Schema cannot judge are listed in UNJUDGEABLE below with the reason;
// for them only rolld's verdict (invalid, at the expected place) is asserted.
// tests/fixtures/known-bugs/ holds specs rolld gets wrong today: the schema is held to
// the documented verdict in their `# expect:` line, rolld's behaviour is only reported.
//
// Prints one line per check and ends with `N passed, N failed`; exits 1 on failure.
// Runs `npm ci` first when node_modules is missing, so a clean clone works.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---- what JSON Schema cannot judge: the one place that says so ----------------------
// Keys are paths under tests/fixtures/ (hostile/ ones are generated at run time).
const UNJUDGEABLE = {
  'invalid/duplicate-yaml-keys.yaml':
    'a key twice in one mapping is refused by the YAML loader; no JSON document exists to validate',
  'invalid/multiple-documents.yaml':
    'one document per file is a property of the YAML stream, not of a JSON document',
  'invalid/invalid-yaml-syntax.yaml': 'not YAML at all',
  'invalid/duplicate-application-names.yaml':
    'names unique within a list of mappings: uniqueItems compares whole items, not one property',
  'invalid/duplicate-deployment-names.yaml':
    'names unique within a list of mappings: uniqueItems compares whole items, not one property',
  'invalid/duplicate-route-prefix.yaml':
    'route_prefix unique across applications: uniqueness of one property of list items',
  'invalid/duplicate-route-prefix-default.yaml':
    'route_prefix unique across applications, with the default "/" filled in: JSON Schema neither applies defaults nor compares items',
  'invalid/duplicate-service-names':
    'service names unique across files: a rule over a directory, not one document',
  'invalid/min-replicas-above-max.yaml':
    'min_replicas <= max_replicas compares two fields (only the default max_replicas of 1 is expressible)',
  'invalid/initial-replicas-outside-bounds.yaml':
    'min_replicas <= initial_replicas <= max_replicas compares three fields',
  'invalid/process-backend-missing-command.yaml':
    'every application needs an entry under backend.process.applications: matches names across two lists',
  'invalid/process-backend-unknown-application.yaml':
    'every backend entry must name an application: matches names across two lists',
  'invalid/process-backend-unknown-ingress.yaml':
    'ingress must name a deployment of the same application: matches names across two lists',
  'invalid/duration-out-of-range.yaml':
    'a duration range bounds its total in seconds (h*3600 + m*60 + s), which a pattern cannot add up',
  'invalid/integer-written-as-float.yaml':
    'JSON Schema counts 2.0 as an integer; rolld wants integers written without a fraction',
  'invalid/integer-written-in-hex.yaml':
    'the YAML 1.2 core schema reads 0x10 as the integer 16; rolld reads integers in decimal only',
  'policies/invalid/steps-not-increasing.yaml':
    'strictly increasing steps compares list items with each other',
  'policies/invalid/start-timeout-out-of-range.yaml':
    'a duration range bounds its total in seconds, which a pattern cannot add up',
  'config/invalid/fetch-interval-out-of-range.yaml':
    'a duration range bounds its total in seconds, which a pattern cannot add up',
  'config/invalid/ports-reversed.yaml':
    'LOW <= HIGH compares two numbers inside one string; the pattern only checks each is within 1024-65535',
  'config/invalid/status-branch-is-explicit-spec-branch.yaml':
    'status.branch differing from an explicitly written source.git.branch compares two fields (only the defaults main and rolld/status are expressible)',
  'hostile/alias-bomb.yaml':
    'alias expansion limits (billion laughs) are a property of the YAML text, not of the JSON document',
  'hostile/recursive-alias.yaml': 'an alias inside its own anchor has no JSON document',
  'hostile/deep-nesting.yaml':
    'the nesting limit is a property of the YAML text; user_config is free-form for the schema',
  'hostile/many-nodes.yaml':
    'the node-count limit is a property of the YAML text; user_config is free-form for the schema',
  'hostile/oversize.yaml': 'the 1 MiB size limit is a property of the file',
};

// ---- arguments and dependencies -------------------------------------------------------
const [rolldArg, sourceArg] = process.argv.slice(2);
if (!rolldArg || !sourceArg) {
  console.error('usage: node check.mjs ROLLD SOURCE_DIR');
  process.exit(2);
}
const ROLLD = path.resolve(rolldArg);
const SOURCE = path.resolve(sourceArg);
const FIXTURES = path.join(SOURCE, 'tests', 'fixtures');

function ensureDependencies() {
  const needed = ['ajv/package.json', 'yaml/package.json'];
  if (needed.every((p) => fs.existsSync(path.join(HERE, 'node_modules', p)))) return;
  const npm = process.env.NPM || 'npm';
  console.log(`node_modules missing: running ${npm} ci --no-audit --no-fund in ${HERE}`);
  const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: HERE, stdio: 'inherit' });
  if (r.status !== 0) {
    console.log(`FAIL npm ci: ${r.error ? r.error.message : `exit ${r.status}`}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}
ensureDependencies();
const ajvModule = await import('ajv/dist/2020.js');
const Ajv2020 = ajvModule.default.default ?? ajvModule.default;
const YAML = await import('yaml');

// ---- reporting ------------------------------------------------------------------------
let passed = 0;
let failed = 0;
function pass(name, detail = '') {
  passed++;
  console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
}
function fail(name, why) {
  failed++;
  console.log(`FAIL ${name}: ${why}`);
}
function note(name, text) {
  console.log(`note ${name}: ${text}`);
}
function check(name, problems, detail) {
  if (problems.length) fail(name, problems.join('; '));
  else pass(name, detail);
}

const TEMP_DIRS = [];

// ---- schemas --------------------------------------------------------------------------
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
function loadSchema(name) {
  const file = path.join(SOURCE, 'schema', name);
  try {
    return ajv.compile(JSON.parse(fs.readFileSync(file, 'utf8')));
  } catch (e) {
    fail(`schema/${name}`, `does not compile: ${e.message}`);
    return null;
  }
}
const SCHEMA_FILES = {
  service: 'service.schema.json',
  policy: 'policy.schema.json',
  plan: 'plan.schema.json',
  config: 'rolld.schema.json',
};
const validators = Object.fromEntries(
  Object.entries(SCHEMA_FILES).map(([kind, file]) => [kind, loadSchema(file)]));
if (Object.values(validators).some((v) => !v)) finish();
for (const file of Object.values(SCHEMA_FILES)) pass(`schema/${file} compiles (strict)`);

function schemaErrors(validate) {
  return (validate.errors || [])
    .slice(0, 3)
    .map((e) => `${e.instancePath || '/'} ${e.message}`)
    .join(', ');
}

// Loads YAML the way an editor's schema check does: YAML 1.2, core schema.
function loadYaml(text) {
  const doc = YAML.parseDocument(text, { version: '1.2', schema: 'core', uniqueKeys: true });
  if (doc.errors.length) throw new Error(doc.errors[0].message.split('\n')[0]);
  return doc.toJS({ maxAliasCount: 100 });
}

// { valid, why } from the schema, or throws when the YAML does not load.
function schemaVerdict(kind, file) {
  const value = loadYaml(fs.readFileSync(file, 'utf8'));
  const validate = validators[kind];
  const valid = validate(value);
  return { valid, why: valid ? '' : schemaErrors(validate) };
}

// ---- running rolld ----------------------------------------------------------------------
function run(args, options = {}) {
  const started = Date.now();
  const r = spawnSync(ROLLD, args, { cwd: SOURCE, encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  return { ...r, seconds: (Date.now() - started) / 1000 };
}

// rolld's verdict on one spec file or directory: { valid, crashed, stderr, seconds }.
function cVerdictSpec(target) {
  const r = run(['validate', target]);
  const crashed = r.error
    ? r.error.message
    : r.signal
      ? `killed by ${r.signal}`
      : r.status !== 0 && r.status !== 1
        ? `exit ${r.status}`
        : '';
  return { valid: r.status === 0, crashed, stderr: r.stderr || '', seconds: r.seconds };
}

const EMPTY_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'rolld-schema-empty-'));
TEMP_DIRS.push(EMPTY_DIR);

// rolld's verdict on one policy: it loads every policy of --policies DIR; with no
// services to plan it exits 0 when they are valid and 2 with the errors when not.
function cVerdictPolicy(file) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rolld-schema-policy-'));
  TEMP_DIRS.push(dir);
  const copy = path.join(dir, path.basename(file));
  fs.copyFileSync(file, copy);
  const r = run(['plan', EMPTY_DIR, '--policies', dir, '--format', 'json']);
  const crashed = r.error
    ? r.error.message
    : r.signal
      ? `killed by ${r.signal}`
      : r.status !== 0 && r.status !== 2
        ? `exit ${r.status}`
        : '';
  return { valid: r.status === 0, crashed, stderr: r.stderr || '', file: copy };
}

// rolld's verdict on one agent config: `rolld run --config FILE --check` exits 0 and prints
// `FILE: valid`, or exits 2 with the errors.
function cVerdictConfig(file) {
  const r = run(['run', '--config', file, '--check']);
  const crashed = r.error
    ? r.error.message
    : r.signal
      ? `killed by ${r.signal}`
      : r.status !== 0 && r.status !== 2
        ? `exit ${r.status}`
        : r.status === 0 && !(r.stdout || '').includes(`${file}: valid\n`)
          ? `exit 0 without "${file}: valid" on stdout`
          : '';
  return { valid: r.status === 0, crashed, stderr: r.stderr || '', file };
}

// rolld's verdict on one document of a kind; file is how rolld names it in its messages.
function cVerdict(kind, target) {
  if (kind === 'service') return { ...cVerdictSpec(rel(target)), file: null };
  if (kind === 'config') return cVerdictConfig(rel(target));
  return cVerdictPolicy(target);
}

// ---- fixture headers ----------------------------------------------------------------------
// `# expect: LINE:COL FIELD` (FIELD may be empty for whole-file errors) or `# expect: valid`,
// then optional `# message: TEXT` lines among the leading comments.
function readHeader(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const header = { expect: null, messages: [] };
  const m = /^# expect: (?:(valid)|(\d+):(\d+)(?: (\S.*))?)$/.exec(lines[0] || '');
  if (!m) return header;
  header.expect = m[1] ? { valid: true } : { valid: false, line: m[2], column: m[3], field: m[4] || '' };
  for (const line of lines.slice(1)) {
    if (!line.startsWith('#')) break;
    const message = /^# message: (.+)$/.exec(line);
    if (message) header.messages.push(message[1]);
  }
  return header;
}

// What rolld must print for an invalid fixture: `FILE:LINE:COL: FIELD: ` (or
// `FILE:LINE:COL: ` when the error names no field) and each `# message:`.
function expectedOutput(printedFile, header) {
  const e = header.expect;
  const place = `${printedFile}:${e.line}:${e.column}: ${e.field ? `${e.field}: ` : ''}`;
  return [place, ...header.messages];
}

function missingFrom(stderr, wanted) {
  return wanted.filter((w) => !stderr.includes(w)).map((w) => `stderr lacks ${JSON.stringify(w)}`);
}

function firstLine(text) {
  return (text.split('\n').find((l) => l.trim()) || '').slice(0, 300);
}

// ---- service specs ----------------------------------------------------------------------
const rel = (p) => path.relative(SOURCE, p);
const fixtureKey = (p) => path.relative(FIXTURES, p).split(path.sep).join('/');
const isYaml = (n) => /\.ya?ml$/.test(n) && !n.startsWith('.');
const listYaml = (dir) =>
  fs.existsSync(dir) ? fs.readdirSync(dir).filter(isYaml).sort().map((n) => path.join(dir, n)) : [];

const seenUnjudgeable = new Set();
function unjudgeableReason(target) {
  const key = fixtureKey(target);
  if (!(key in UNJUDGEABLE)) return null;
  seenUnjudgeable.add(key);
  return UNJUDGEABLE[key];
}

// Compares rolld and the schema on one spec or policy; expected: true (valid), false
// (invalid) or undefined (whatever rolld says, as for the examples).
function checkDocument(kind, target, expected, name) {
  const problems = [];
  const c = cVerdict(kind, target);
  if (c.crashed) return fail(name, `rolld crashed (${c.crashed}) ${firstLine(c.stderr)}`);
  if (expected !== undefined && c.valid !== expected)
    problems.push(`rolld says ${c.valid ? 'valid' : 'invalid'}, expected ${expected ? 'valid' : 'invalid'}` +
      (c.valid ? '' : `: ${firstLine(c.stderr)}`));

  if (expected === false) {
    const files = fs.statSync(target).isDirectory() ? listYaml(target) : [target];
    const headers = files.map((f) => [f, readHeader(f)]).filter(([, h]) => h.expect && !h.expect.valid);
    if (!headers.length) problems.push('no `# expect: LINE:COL FIELD` line');
    for (const [f, h] of headers) {
      const printed = kind === 'service' ? rel(f) : c.file;
      problems.push(...missingFrom(c.stderr, expectedOutput(printed, h)));
    }
    if (problems.length && c.stderr) problems.push(`rolld said: ${firstLine(c.stderr)}`);
  }

  const reason = unjudgeableReason(target);
  if (reason) {
    if (expected !== false) problems.push('listed as unjudgeable but not an invalid fixture');
    return check(name, problems, `rolld only; schema cannot judge: ${reason}`);
  }
  let s;
  try {
    s = schemaVerdict(kind, target);
  } catch (e) {
    problems.push(`YAML loader refused it (${e.message}); list it in UNJUDGEABLE with the reason`);
    return check(name, problems);
  }
  if (s.valid !== c.valid)
    problems.push(`verdicts differ: rolld says ${c.valid ? 'valid' : `invalid (${firstLine(c.stderr)})`}, ` +
      `schema says ${s.valid ? 'valid' : `invalid (${s.why})`}`);
  check(name, problems);
}

console.log('# examples/services');
const examplesDir = path.join(SOURCE, 'examples', 'services');
for (const sub of fs.readdirSync(examplesDir).sort()) {
  const dir = path.join(examplesDir, sub);
  if (!fs.statSync(dir).isDirectory()) continue;
  for (const file of listYaml(dir)) checkDocument('service', file, undefined, rel(file));
}

console.log('# tests/fixtures/valid, tests/fixtures/invalid');
for (const [sub, expected] of [['valid', true], ['invalid', false]]) {
  const dir = path.join(FIXTURES, sub);
  const entries = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  if (!entries.length) fail(`tests/fixtures/${sub}`, 'no fixtures');
  for (const entry of entries) {
    const target = path.join(dir, entry);
    if (!fs.statSync(target).isDirectory() && !isYaml(entry)) continue;
    checkDocument('service', target, expected, rel(target));
  }
}

// ---- known bugs: the schema is held to the documented verdict ---------------------------
function checkKnownBug(kind, file) {
  const name = rel(file);
  const header = readHeader(file);
  if (!header.expect) return fail(name, 'no `# expect:` line');
  const c = cVerdict(kind, file);
  const printed = kind === 'service' ? name : c.file;
  const cRight = !c.crashed && c.valid === header.expect.valid &&
    (header.expect.valid || !missingFrom(c.stderr, expectedOutput(printed, header)).length);
  if (cRight) note(name, 'rolld now gives the documented verdict: move this fixture out of known-bugs/');
  else
    note(name, `known rolld bug still present: ${c.crashed ? `crashed (${c.crashed})` : c.valid ? 'accepted' :
      `said ${firstLine(c.stderr)}`}`);
  let s;
  try {
    s = schemaVerdict(kind, file);
  } catch (e) {
    return fail(name, `YAML loader refused it: ${e.message}`);
  }
  check(name, s.valid === header.expect.valid ? [] :
    [`schema says ${s.valid ? 'valid' : `invalid (${s.why})`}, documented verdict is ` +
      `${header.expect.valid ? 'valid' : 'invalid'}`], 'schema matches the documented verdict');
}

console.log('# tests/fixtures/known-bugs (schema checked; rolld reported, not counted)');
for (const file of listYaml(path.join(FIXTURES, 'known-bugs'))) checkKnownBug('service', file);

// ---- hostile YAML, generated ------------------------------------------------------------
console.log('# hostile YAML (generated)');
const HOSTILE = fs.mkdtempSync(path.join(os.tmpdir(), 'rolld-schema-hostile-'));
TEMP_DIRS.push(HOSTILE);
const specAround = (userConfig) =>
  [
    'name: hostile',
    'applications:',
    '  - name: app',
    '    import_path: app:deployment',
    '    deployments:',
    '      - name: Model',
    `        user_config: ${userConfig}`,
    'backend:',
    '  process:',
    '    applications:',
    '      - name: app',
    '        command: [model-server]',
    '',
  ].join('\n');
function aliasBomb() {
  // nine levels of ten aliases each: 10^9 nodes once expanded
  const lines = ['{'];
  lines.push('          l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol],');
  for (let i = 1; i < 9; i++)
    lines.push(`          l${i}: &l${i} [${Array(10).fill(`*l${i - 1}`).join(', ')}],`);
  lines.push('        }');
  return specAround(lines.join('\n'));
}
const hostile = [
  {
    name: 'alias-bomb.yaml',
    text: aliasBomb(),
    message: 'document expands to more than 100000 nodes (aliases counted); refusing it',
  },
  {
    name: 'recursive-alias.yaml',
    text: specAround('&loop [1, *loop]'),
    message: "alias '*loop' refers to a node that contains it",
  },
  {
    name: 'deep-nesting.yaml',
    text: specAround(`${'['.repeat(500)}1${']'.repeat(500)}`),
    message: 'nesting deeper than 64 levels; refusing the document',
  },
  {
    name: 'many-nodes.yaml',
    text: specAround(`[${Array(150000).fill('0').join(',')}]`),
    message: 'document expands to more than 100000 nodes',
  },
  {
    name: 'oversize.yaml',
    text: specAround('{}') + `# ${'x'.repeat(78)}\n`.repeat((2 << 20) / 80),
    message: ':0:0: file is over the limit of 1048576 bytes; refusing it',
  },
];
// The generated files must themselves be what they claim: the oversize one valid but
// for its size, and each limit crossed by a wide margin.
for (const h of hostile) {
  const file = path.join(HOSTILE, h.name);
  fs.writeFileSync(file, h.text);
  const name = `hostile/${h.name}`;
  const reason = UNJUDGEABLE[name];
  if (reason) seenUnjudgeable.add(name);
  const c = cVerdictSpec(file);
  const problems = [];
  if (!reason) problems.push('not listed in UNJUDGEABLE');
  if (c.crashed) problems.push(`rolld crashed (${c.crashed})`);
  else if (c.valid) problems.push('rolld accepted it');
  else problems.push(...missingFrom(c.stderr, [`${file}:`, h.message]));
  if (c.seconds > 5) problems.push(`rolld took ${c.seconds}s`);
  if (problems.length && c.stderr) problems.push(`rolld said: ${firstLine(c.stderr)}`);
  check(name, problems, `${(h.text.length / 1024).toFixed(0)} KiB, refused in ${c.seconds.toFixed(2)}s`);
}

// ---- policies ---------------------------------------------------------------------------
console.log('# policies');
for (const file of listYaml(path.join(SOURCE, 'policies'))) checkDocument('policy', file, true, rel(file));
for (const [sub, expected] of [['valid', true], ['invalid', false]]) {
  const files = listYaml(path.join(FIXTURES, 'policies', sub));
  if (!files.length) fail(`tests/fixtures/policies/${sub}`, 'no fixtures');
  for (const file of files) checkDocument('policy', file, expected, rel(file));
}
for (const file of listYaml(path.join(FIXTURES, 'policies', 'known-bugs'))) checkKnownBug('policy', file);

// ---- agent configs (rolld.yaml) ---------------------------------------------------------
console.log('# agent configs (rolld run --config FILE --check)');
checkDocument('config', path.join(SOURCE, 'examples', 'config', 'rolld.yaml'), true, 'examples/config/rolld.yaml');
for (const [sub, expected] of [['valid', true], ['invalid', false]]) {
  const files = listYaml(path.join(FIXTURES, 'config', sub));
  if (!files.length) fail(`tests/fixtures/config/${sub}`, 'no fixtures');
  for (const file of files) checkDocument('config', file, expected, rel(file));
}
for (const file of listYaml(path.join(FIXTURES, 'config', 'known-bugs'))) checkKnownBug('config', file);

// ---- plan output ------------------------------------------------------------------------
console.log('# rolld plan --format json');
function checkPlan(args, wantStatus) {
  const name = `rolld plan ${args.join(' ')}`;
  const r = run(['plan', ...args, '--format', 'json']);
  if (r.signal || r.status !== wantStatus)
    return fail(name, `exit ${r.signal || r.status}, expected ${wantStatus}: ${firstLine(r.stderr || '')}`);
  let plan;
  try {
    plan = JSON.parse(r.stdout);
  } catch (e) {
    return fail(name, `output is not JSON: ${e.message}`);
  }
  const valid = validators.plan(plan);
  const actions = Object.keys(plan.summary || {}).sort().join(', ');
  check(name, valid ? [] : [schemaErrors(validators.plan)], `actions: ${actions || 'none'}`);
  return plan;
}
const plan = checkPlan(['examples/services/v2', '--against', 'examples/services/v1'], 0);
checkPlan(['examples/services/v1'], 0);
checkPlan(['examples/services/invalid', '--against', 'examples/services/v1'], 1);
checkPlan([rel(path.join(FIXTURES, 'valid')), '--against', rel(path.join(FIXTURES, 'valid'))], 0);
checkPlan([EMPTY_DIR], 0);

// The plan schema must not be vacuous: damaged plans are refused.
if (plan && plan.services && plan.services.length) {
  const damaged = [
    ['without summary', (p) => delete p.summary],
    ['with an unknown action', (p) => (p.services[0].action = 'rolling')],
    ['with a service missing peak', (p) => delete p.services[0].peak],
    ['with an unknown key', (p) => (p.services[0].extra = true)],
    ['with a 15-digit version', (p) => (p.services[0].new_version = 'abcdef012345678')],
  ];
  for (const [what, damage] of damaged) {
    const copy = structuredClone(plan);
    damage(copy);
    check(`plan.schema.json refuses a plan ${what}`, validators.plan(copy) ? ['accepted'] : []);
  }
}

// ---- the list of unjudgeable fixtures must stay true ---------------------------------------
for (const key of Object.keys(UNJUDGEABLE))
  if (!seenUnjudgeable.has(key)) fail(`UNJUDGEABLE['${key}']`, 'no such fixture: remove it from the list');

finish();

function finish() {
  for (const dir of TEMP_DIRS) fs.rmSync(dir, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
