#!/usr/bin/env node
// The contract check: docs/openapi.yaml against the code and against hcgw's real answers.
//
//   node validate.mjs --doc docs/openapi.yaml --source <repo> --hcgw <built hcgw>
//                     [--exchanges exchanges.json] [--not-exercised code,code] [--mutate NAME]
//
// 1. The document against the code (hcgw's tables, as `hcgw --dump-tables` prints them; no
//    gateway runs, and nothing reads the C source):
//    - its operations are exactly the rows of the route table: same method and path,
//      operationId = the route's name, the one 2xx status = the route's success status, a
//      request body iff the route takes one, and x-hcgw-upstream = the HelpCrunch call
//      (method, path, retried) for upstream routes, absent for local ones; plus, for each GET
//      row, its HEAD (operationId <name>_head, the same success status and x-hcgw-upstream, no
//      body in or out), and on every path one OPTIONS, the CORS preflight (operationId
//      preflight_*, 204 with no body, 403 for an origin not allowed, no security);
//    - the ErrorCode enum is exactly the set of codes in the error table, and every
//      (status, code) row of that table is allowed by some response of that status;
//    - info.version is the project version of CMakeLists.txt.
// 2. Each recorded exchange (tests/contract/test_contract.py writes them) against the document:
//    - the request picks its operation as hcgw's router does (literal segments beat
//      parameters); a path no operation has must have got x-unmatched-requests' 404, a method
//      the path does not have its 405, with an Allow header naming exactly the path's methods
//      (OPTIONS aside: it is served as a preflight only), as a preflight's
//      Access-Control-Allow-Methods does;
//    - the status is declared for that operation (no ranges, no default), every required
//      header is there and each declared header's value fits its schema, the Content-Type is
//      a declared media type, and the body fits its schema (JSON Schema 2020-12, ajv), as it
//      inflates when it came with Content-Encoding: gzip (only gzip, and only where the
//      response declares the header);
//      a response without content has no body, and neither has any answer to HEAD (whose
//      content, if its response declares one, is the GET's and is not checked);
//    - envelope consistency (but for HEAD, which has no body): error.status = the HTTP status,
//      error.request_id = X-Request-Id, and a caller's valid X-Request-Id is echoed;
//    - the request side: parameters and bodies hcgw refused (invalid_contact_id, invalid_tag,
//      invalid_query, invalid_body) must be refused by the document's schemas too, and those
//      hcgw accepted (a 2xx, or an answer HelpCrunch gave) must be accepted by them (a
//      preflight does not look at the path's parameters).
// 3. Coverage: every operation answered its success status at least once, and every error
//    code was seen, except those named in --not-exercised.
// --mutate applies one deliberate drift to the document first (the test's self-check that
// this script does fail on drift). Exit status 0 when everything holds, 1 otherwise; each
// problem is one line on stderr.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import Ajv2020 from 'ajv/dist/2020.js';
import YAML from 'yaml';

const DOC_URI = 'https://hcgw.invalid/openapi.yaml';
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
// Answers hcgw gives before it looks at the route (a draining gateway, a Content-Length over
// the limit, a URI over 2048 bytes), so on any path and method: what every operation declares.
const BEFORE_ROUTING = {
  413: '#/components/responses/PayloadTooLarge',
  414: '#/components/responses/UriTooLong',
  503: '#/components/responses/Draining',
};

function parseArgs(argv) {
  const args = { notExercised: [] };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--doc') args.doc = v;
    else if (a === '--source') args.source = v;
    else if (a === '--hcgw') args.hcgw = v;
    else if (a === '--exchanges') args.exchanges = v;
    else if (a === '--not-exercised') args.notExercised = v.split(',').filter(Boolean);
    else if (a === '--mutate') args.mutate = v;
    else {
      console.error(`validate.mjs: unknown argument ${a}`);
      process.exit(2);
    }
    i++;
  }
  if (!args.doc || !args.source || !args.hcgw) {
    console.error('usage: validate.mjs --doc FILE --source DIR --hcgw BIN [--exchanges FILE] ' +
                  '[--not-exercised CODES] [--mutate NAME]');
    process.exit(2);
  }
  return args;
}

const problems = [];
function problem(msg) {
  problems.push(msg);
}

// ---- the document ----

function pointerEscape(s) {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

function pointerGet(doc, pointer) {
  let node = doc;
  for (const raw of pointer.replace(/^#\//, '').split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === undefined || node === null) return undefined;
    node = node[key];
  }
  return node;
}

// Follow $ref chains; returns [object, its JSON pointer].
function deref(doc, obj, pointer) {
  let seen = 0;
  while (obj && typeof obj === 'object' && typeof obj.$ref === 'string') {
    if (!obj.$ref.startsWith('#/') || ++seen > 20) throw new Error(`cannot follow ${obj.$ref}`);
    pointer = obj.$ref;
    obj = pointerGet(doc, pointer);
  }
  return [obj, pointer];
}

// Deliberate drifts, for the test's check that they are caught.
const MUTATIONS = {
  'drop-code-rate_limited': (doc) => {
    const e = doc.components.schemas.ErrorCode.enum;
    e.splice(e.indexOf('rate_limited'), 1);
  },
  'drop-path-block': (doc) => {
    delete doc.paths['/contacts/{id}/block'];
  },
  'create-answers-200': (doc) => {
    const r = doc.paths['/contacts'].post.responses;
    r['200'] = r['201'];
    delete r['201'];
  },
  'nosniff-changed': (doc) => {
    doc.components.headers['X-Content-Type-Options'].schema.const = 'sniff';
  },
  'tag-name-shorter': (doc) => {
    doc.components.schemas.TagName.maxLength = 99;
  },
  'list-total-renamed': (doc) => {
    const s = doc.components.schemas.ContactList;
    s.required = ['count', 'data'];
  },
  'search-limit-looser': (doc) => {
    doc.components.schemas.SearchBody.properties.limit.maximum = 1000;
  },
  'drop-preflight-healthz': (doc) => {
    delete doc.paths['/healthz'].options;
  },
  'drop-head-contact': (doc) => {
    delete doc.paths['/contacts/{id}'].head;
  },
};

// The methods a path's Allow names: its operations but OPTIONS (a preflight only).
function allowedMethods(item) {
  return METHODS.filter((m) => m !== 'options' && item[m]).map((m) => m.toUpperCase());
}

// ---- the code ----

// The route and error tables of the built hcgw (docs/hcgw.8, --dump-tables).
function tables(hcgw) {
  const t = JSON.parse(execFileSync(hcgw, ['--dump-tables'], { encoding: 'utf8', timeout: 30000 }));
  if (!Array.isArray(t.routes) || t.routes.length === 0 || !Array.isArray(t.errors) ||
      t.errors.length === 0) {
    throw new Error(`${hcgw} --dump-tables: no routes or no errors`);
  }
  return t;
}

// ---- schemas ----

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const compiled = new Map();

function validator(pointer) {
  let v = compiled.get(pointer);
  if (!v) {
    v = ajv.compile({ $ref: DOC_URI + pointer });
    compiled.set(pointer, v);
  }
  return v;
}

function check(pointer, value) {
  const v = validator(pointer);
  if (v(value)) return null;
  return ajv.errorsText(v.errors, { dataVar: 'body' });
}

// ---- static checks ----

function operations(doc) {
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) {
      if (item[m]) ops.push({ path, method: m.toUpperCase(), op: item[m], item });
    }
  }
  return ops;
}

function staticChecks(doc, routes, errors) {
  const ops = operations(doc);
  const byKey = new Map(ops.map((o) => [`${o.method} ${o.path}`, o]));
  for (const r of routes) {
    const o = byKey.get(`${r.method} ${r.pattern}`);
    if (!o) {
      problem(`route ${r.name} (${r.method} ${r.pattern}) of hcgw is not in the document`);
      continue;
    }
    byKey.delete(`${r.method} ${r.pattern}`);
    const where = `${r.method} ${r.pattern}`;
    if (o.op.operationId !== r.name) {
      problem(`${where}: operationId ${o.op.operationId}, the route is named ${r.name}`);
    }
    const ok = Object.keys(o.op.responses || {}).filter((s) => /^2/.test(s));
    if (ok.length !== 1 || Number(ok[0]) !== r.success_status) {
      problem(`${where}: success responses [${ok}], the route answers ${r.success_status}`);
    }
    const takesBody = r.body !== 'none';
    if (Boolean(o.op.requestBody) !== takesBody) {
      problem(`${where}: ${takesBody ? 'no' : 'a'} requestBody, the route ${takesBody ? 'takes' : 'takes no'} body`);
    }
    if (takesBody && !o.op.responses['415']) problem(`${where}: a body route without 415`);
    const up = o.op['x-hcgw-upstream'];
    if (r.local) {
      if (up !== undefined) problem(`${where}: a local route with x-hcgw-upstream`);
    } else if (!up || up.method !== r.up_method || up.path !== r.up_path ||
               up.retried !== r.retryable) {
      problem(`${where}: x-hcgw-upstream ${JSON.stringify(up)}, the route calls ` +
              `${r.up_method} ${r.up_path} (retried: ${r.retryable})`);
    }
  }
  // HEAD: the twin of each GET row.
  for (const r of routes.filter((x) => x.method === 'GET')) {
    const where = `HEAD ${r.pattern}`;
    const o = byKey.get(where);
    const get = ops.find((x) => x.method === 'GET' && x.path === r.pattern);
    if (!o) {
      problem(`${where} (the HEAD of ${r.name}) is not in the document`);
      continue;
    }
    byKey.delete(where);
    if (o.op.operationId !== `${r.name}_head`) {
      problem(`${where}: operationId ${o.op.operationId}, want ${r.name}_head`);
    }
    const ok = Object.keys(o.op.responses || {}).filter((st) => /^2/.test(st));
    if (ok.length !== 1 || Number(ok[0]) !== r.success_status) {
      problem(`${where}: success responses [${ok}], the GET answers ${r.success_status}`);
    }
    if (o.op.requestBody) problem(`${where}: a requestBody`);
    for (const [st, resp] of Object.entries(o.op.responses || {})) {
      const [obj] = deref(doc, resp, '');
      if (obj?.content && Object.keys(obj.content).length > 0) {
        problem(`${where}: response ${st} has content; a HEAD answer has no body`);
      }
    }
    const up = o.op['x-hcgw-upstream'];
    if (JSON.stringify(up) !== JSON.stringify(get?.op['x-hcgw-upstream'])) {
      problem(`${where}: x-hcgw-upstream ${JSON.stringify(up)} is not the GET's`);
    }
  }
  // OPTIONS: the CORS preflight, on every path.
  for (const path of Object.keys(doc.paths || {})) {
    const where = `OPTIONS ${path}`;
    const o = byKey.get(where);
    if (!o) {
      problem(`${where} (its CORS preflight) is not in the document`);
      continue;
    }
    byKey.delete(where);
    if (!/^preflight_[a-z_]+$/.test(o.op.operationId || '')) {
      problem(`${where}: operationId ${o.op.operationId}, want preflight_<path>`);
    }
    const ok = Object.keys(o.op.responses || {}).filter((st) => /^2/.test(st));
    if (ok.join() !== '204') {
      problem(`${where}: success responses [${ok}], a preflight answers 204`);
    }
    if (!o.op.responses?.['403']) problem(`${where}: no 403 (cors_origin_not_allowed)`);
    if (!Array.isArray(o.op.security) || o.op.security.length !== 0) {
      problem(`${where}: a preflight carries no credential (security: [])`);
    }
    if (o.op.requestBody) problem(`${where}: a requestBody`);
  }
  for (const key of byKey.keys()) problem(`${key} is in the document but not a route of hcgw`);

  const enumCodes = new Set(doc.components?.schemas?.ErrorCode?.enum || []);
  const tableCodes = new Set(errors.map((e) => e.code));
  for (const c of tableCodes) {
    if (!enumCodes.has(c)) problem(`error code ${c} of hcgw is not in the ErrorCode enum`);
  }
  for (const c of enumCodes) {
    if (!tableCodes.has(c)) problem(`ErrorCode ${c} is not an error code of hcgw`);
  }
  // Every row must be something some response of its status allows.
  const responses = allResponses(doc);
  const seen = new Set();
  for (const e of errors) {
    const key = `${e.status} ${e.code}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const candidates = responses.filter((r) => r.status === String(e.status));
    const fits = candidates.some((r) => {
      const ptr = jsonSchemaPointer(doc, r.pointer);
      if (!ptr) return false;
      const env = { error: { status: e.status, code: e.code, message: 'm', request_id: 'r' } };
      const withUp = { error: { ...env.error, upstream_status: e.status } };
      return check(ptr, env) === null || check(ptr, withUp) === null;
    });
    if (!fits) problem(`${e.status} ${e.code} (hcgw's error table) is allowed by no ${e.status} response`);
  }
}

// Every response object of the document, with its status key and pointer.
function allResponses(doc) {
  const out = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) {
      for (const [status, resp] of Object.entries(item[m]?.responses || {})) {
        const base = `#/paths/${pointerEscape(path)}/${m}/responses/${status}`;
        const [, ptr] = deref(doc, resp, base);
        out.push({ status, pointer: ptr });
      }
    }
  }
  for (const [status, resp] of Object.entries(doc['x-unmatched-requests'] || {})) {
    if (!/^[1-5][0-9][0-9]$/.test(status)) continue;
    const [, ptr] = deref(doc, resp, `#/x-unmatched-requests/${status}`);
    out.push({ status, pointer: ptr });
  }
  return out;
}

function jsonSchemaPointer(doc, responsePointer) {
  const resp = pointerGet(doc, responsePointer);
  if (!resp?.content?.['application/json']) return null;
  return `${responsePointer}/content/application~1json/schema`;
}

// ---- exchanges ----

function decodeBody(b64) {
  return Buffer.from(b64 || '', 'base64');
}

function header(headers, name) {
  const lower = name.toLowerCase();
  const hit = headers.find(([k]) => k.toLowerCase() === lower);
  return hit ? hit[1] : undefined;
}

function normMediaType(s) {
  return s.split(';').map((p) => p.trim().toLowerCase()).filter(Boolean).join('; ');
}

// hcgw's router: the path template with the most literal segments wins.
function matchPath(doc, path) {
  if (!path.startsWith('/') || path === '/' || path.endsWith('/') || path.includes('//')) {
    return null;
  }
  const segs = path.slice(1).split('/');
  let best = null;
  for (const template of Object.keys(doc.paths || {})) {
    const tsegs = template.slice(1).split('/');
    if (tsegs.length !== segs.length) continue;
    let literals = 0;
    const params = {};
    let fits = true;
    for (let i = 0; i < segs.length; i++) {
      const t = tsegs[i];
      if (t.startsWith('{') && t.endsWith('}')) {
        params[t.slice(1, -1)] = segs[i];
      } else if (t === segs[i]) {
        literals++;
      } else {
        fits = false;
        break;
      }
    }
    if (fits && (!best || literals > best.literals)) best = { template, literals, params };
  }
  return best;
}

// The contract's decoding of a {name} segment: %XX (either case), '+' stays; strict UTF-8.
function decodeSegment(seg) {
  const bytes = [];
  for (let i = 0; i < seg.length; i++) {
    if (seg[i] === '%') {
      const hx = seg.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hx)) return null;
      bytes.push(parseInt(hx, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(seg[i], 'utf8')) bytes.push(b);
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

function parameterObjects(doc, item, op, itemPointer, method) {
  const out = [];
  const add = (list, base) => (list || []).forEach((p, i) => {
    const [obj, ptr] = deref(doc, p, `${base}/parameters/${i}`);
    out.push({ obj, ptr });
  });
  add(item.parameters, itemPointer);
  add(op.parameters, `${itemPointer}/${method}`);
  return out;
}

// Does the request fit the document's parameters and body? Returns a list of reasons it
// does not, by kind: { path: [...], query: [...], body: [...] }.
function requestFit(doc, ex, match, item, op, itemPointer, method) {
  const reasons = { path: [], query: [], body: [], bodyUnreadable: false };
  const params = parameterObjects(doc, item, op, itemPointer, method);
  for (const { obj, ptr } of params) {
    if (obj.in === 'path') {
      const raw = match.params[obj.name];
      const value = obj.name === 'name' ? decodeSegment(raw) : raw;
      if (value === null) {
        reasons.path.push(`${obj.name}: not a valid percent-encoded UTF-8 segment`);
        continue;
      }
      const err = check(`${ptr}/schema`, value);
      if (err) reasons.path.push(`${obj.name}=${JSON.stringify(value)}: ${err}`);
    }
  }
  const queryParams = params.filter((p) => p.obj.in === 'query');
  const q = ex.target.includes('?') ? ex.target.slice(ex.target.indexOf('?') + 1) : null;
  if (q !== null && queryParams.length > 0) {
    const seen = new Set();
    for (const part of q.split('&')) {
      const eq = part.indexOf('=');
      const key = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
      const raw = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1));
      const p = queryParams.find((x) => x.obj.name === key);
      if (!p) {
        reasons.query.push(`${key}: not a parameter of this operation`);
        continue;
      }
      if (seen.has(key)) reasons.query.push(`${key}: repeated`);
      seen.add(key);
      const type = pointerGet(doc, `${p.ptr}/schema`)?.type;
      let value = raw;
      if (type === 'integer') {
        value = /^[0-9]+$/.test(raw) ? Number(raw) : raw;
      }
      const err = check(`${p.ptr}/schema`, value);
      if (err) reasons.query.push(`${key}=${JSON.stringify(raw)}: ${err}`);
    }
  }
  if (op.requestBody) {
    const [rb, rbPtr] = deref(doc, op.requestBody, `${itemPointer}/${method}/requestBody`);
    const bytes = ex.req_body_b64 === null ? null : decodeBody(ex.req_body_b64);
    if (bytes === null || bytes.length === 0) {
      if (rb.required) reasons.body.push('no body');
    } else {
      let value;
      try {
        value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch {
        reasons.bodyUnreadable = true;
        reasons.body.push('not JSON');
      }
      if (!reasons.bodyUnreadable) {
        const err = check(`${rbPtr}/content/application~1json/schema`, value);
        if (err) reasons.body.push(err);
      }
    }
  }
  return reasons;
}

function validateResponse(doc, ex, respPointer, label) {
  const fail = (msg) => problem(`${label}: ${msg}`);
  const resp = pointerGet(doc, respPointer);
  for (const [name, h] of Object.entries(resp.headers || {})) {
    const [hobj, hptr] = deref(doc, h, `${respPointer}/headers/${pointerEscape(name)}`);
    const value = header(ex.headers, name);
    if (value === undefined) {
      if (hobj.required) fail(`the required header ${name} is missing`);
      continue;
    }
    const type = hobj.schema?.type;
    const v = type === 'integer' && /^-?[0-9]+$/.test(value) ? Number(value) : value;
    const err = check(`${hptr}/schema`, v);
    if (err) fail(`header ${name}: ${JSON.stringify(value)}: ${err}`);
  }
  let body = decodeBody(ex.body_b64);
  const coding = header(ex.headers, 'Content-Encoding');
  if (coding !== undefined && !Object.keys(resp.headers || {}).includes('Content-Encoding'))
    fail(`Content-Encoding ${coding} where the document declares none`);
  if (coding !== undefined && ex.method !== 'HEAD' && body.length > 0) {
    if (coding !== 'gzip') {
      fail(`Content-Encoding ${coding} is not gzip`);
      return null;
    }
    try {
      body = gunzipSync(body);
    } catch {
      fail('the body is not the gzip its Content-Encoding says');
      return null;
    }
  }
  const ctype = header(ex.headers, 'Content-Type');
  const content = resp.content || {};
  if (ex.method === 'HEAD') {
    if (body.length !== 0) fail(`a body of ${body.length} bytes in an answer to HEAD`);
    return null;
  }
  if (Object.keys(content).length === 0) {
    if (body.length !== 0) fail(`a body of ${body.length} bytes where the document declares none`);
    return null;
  }
  if (ctype === undefined) {
    fail('no Content-Type');
    return null;
  }
  const key = Object.keys(content).find((k) => normMediaType(k) === normMediaType(ctype)) ??
    Object.keys(content).find((k) => !k.includes(';') &&
                              normMediaType(k) === normMediaType(ctype.split(';')[0]));
  if (key === undefined) {
    fail(`Content-Type ${ctype} is not one of [${Object.keys(content).join(', ')}]`);
    return null;
  }
  const schemaPtr = `${respPointer}/content/${pointerEscape(key)}/schema`;
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    fail('the body is not UTF-8');
    return null;
  }
  let value = text;
  if (/[/+]json$/.test(key.split(';')[0].trim())) {
    try {
      value = JSON.parse(text);
    } catch {
      fail(`the body is not JSON: ${text.slice(0, 80)}`);
      return null;
    }
  }
  const err = check(schemaPtr, value);
  if (err) fail(`body: ${err}`);
  return value;
}

function validateExchange(doc, ex, coverage) {
  const qpos = ex.target.indexOf('?');
  const path = qpos < 0 ? ex.target : ex.target.slice(0, qpos);
  const label = `[${ex.name}] ${ex.method} ${ex.target.length > 80 ? ex.target.slice(0, 77) + '...' : ex.target} → ${ex.status}`;
  const fail = (msg) => problem(`${label}: ${msg}`);
  const match = path.length <= 2048 ? matchPath(doc, path) : null;
  let respPointer;
  let op = null;
  let item = null;
  let itemPointer = null;
  const method = ex.method.toLowerCase();

  const unmatched = doc['x-unmatched-requests'] || {};
  if (!match) {
    if (ex.status !== 405 && unmatched[String(ex.status)]) {
      respPointer = `#/x-unmatched-requests/${ex.status}`;
    } else if (BEFORE_ROUTING[ex.status]) {
      respPointer = BEFORE_ROUTING[ex.status];
    } else {
      fail('no operation has this path: only x-unmatched-requests (but 405) may answer');
      return;
    }
  } else {
    item = doc.paths[match.template];
    itemPointer = `#/paths/${pointerEscape(match.template)}`;
    op = METHODS.includes(method) ? item[method] : undefined;
    if (!op) {
      if (ex.status === 405) {
        respPointer = '#/x-unmatched-requests/405';
        const allow = (header(ex.headers, 'Allow') || '').split(',').map((s) => s.trim()).filter(Boolean);
        const declared = allowedMethods(item);
        if ([...allow].sort().join(',') !== [...declared].sort().join(',')) {
          fail(`Allow: ${allow.join(', ')}, the document gives ${match.template} ${declared.join(', ')}`);
        }
      } else if (ex.status !== 404 && unmatched[String(ex.status)]) {
        respPointer = `#/x-unmatched-requests/${ex.status}`;
      } else if (BEFORE_ROUTING[ex.status]) {
        respPointer = BEFORE_ROUTING[ex.status];
      } else {
        fail(`${ex.method} is not an operation of ${match.template}: only x-unmatched-requests ` +
             '(but 404) may answer');
        return;
      }
    } else {
      const resp = op.responses?.[String(ex.status)];
      if (!resp) {
        fail(`${ex.status} is not a declared response of ${op.operationId} ` +
             `(declared: ${Object.keys(op.responses || {}).join(', ')})`);
        return;
      }
      [, respPointer] = deref(doc, resp, `${itemPointer}/${method}/responses/${ex.status}`);
    }
  }

  [, respPointer] = deref(doc, pointerGet(doc, respPointer), respPointer);
  const body = validateResponse(doc, ex, respPointer, label);

  // The request id: echoed when valid, generated otherwise; the envelope says the same.
  const rid = header(ex.headers, 'X-Request-Id');
  const sent = ex.req_headers['X-Request-Id'];
  if (sent !== undefined && ID_PATTERN.test(sent) && rid !== sent) {
    fail(`X-Request-Id ${rid}, the caller sent the valid ${sent}`);
  }
  if (sent !== undefined && !ID_PATTERN.test(sent) && rid === sent) {
    fail('an invalid caller X-Request-Id was echoed');
  }
  let code = null;
  let upstreamAnswered = ex.status >= 200 && ex.status < 300;
  if (ex.status >= 400 && ex.method !== 'HEAD') {
    const err = body && typeof body === 'object' ? body.error : undefined;
    if (!err) {
      fail('an error answer without the envelope');
    } else {
      code = err.code;
      if (err.status !== ex.status) fail(`error.status ${err.status} in a ${ex.status} answer`);
      if (err.request_id !== rid) fail(`error.request_id ${err.request_id}, X-Request-Id ${rid}`);
      if (err.upstream_status !== undefined) upstreamAnswered = true;
      coverage.codes.add(code);
    }
  }
  if (op && ex.status >= 200 && ex.status < 300) coverage.ops.add(op.operationId);
  // A preflight names the path's methods, as its Allow would.
  if (op && method === 'options' && ex.status === 204) {
    const named = (header(ex.headers, 'Access-Control-Allow-Methods') || '').split(',')
      .map((m) => m.trim()).filter(Boolean);
    const declared = allowedMethods(item);
    if ([...named].sort().join(',') !== [...declared].sort().join(',')) {
      fail(`Access-Control-Allow-Methods: ${named.join(', ')}, the document gives ` +
           `${match.template} ${declared.join(', ')}`);
    }
  }

  // The request side (a preflight looks at no parameter).
  if (!op || method === 'options') return;
  const fit = requestFit(doc, ex, match, item, op, itemPointer, method);
  const pathIds = fit.path.filter((r) => r.startsWith('id'));
  const pathNames = fit.path.filter((r) => r.startsWith('name'));
  switch (code) {
    case 'invalid_contact_id':
      if (pathIds.length === 0) fail('hcgw refused the id, the document accepts it');
      break;
    case 'invalid_tag':
      if (pathIds.length > 0) fail('an invalid id is reported as invalid_tag');
      if (pathNames.length === 0 && fit.body.length === 0) {
        fail('hcgw refused the tag name, the document accepts it');
      }
      break;
    case 'invalid_query':
      if (fit.query.length === 0) fail('hcgw refused the query, the document accepts it');
      break;
    case 'invalid_body':
      if (fit.body.length === 0) fail('hcgw refused the body, the document accepts it');
      break;
    default:
      break;
  }
  if (upstreamAnswered) {
    for (const r of [...fit.path, ...fit.query]) fail(`hcgw took it, the document refuses: ${r}`);
  }
  if (ex.status >= 200 && ex.status < 300) {
    for (const r of fit.body) fail(`hcgw took the body, the document refuses it: ${r}`);
  }
}

// ---- main ----

function main() {
  const args = parseArgs(process.argv);
  const text = readFileSync(args.doc, 'utf8');
  const doc = YAML.parse(text);
  if (!/^3\.1\./.test(String(doc.openapi))) problem(`openapi is ${doc.openapi}, not 3.1.x`);
  if (args.mutate) {
    if (!MUTATIONS[args.mutate]) {
      console.error(`validate.mjs: no mutation ${args.mutate} (${Object.keys(MUTATIONS).join(', ')})`);
      process.exit(2);
    }
    MUTATIONS[args.mutate](doc);
  }
  ajv.addSchema(doc, DOC_URI, undefined, false);
  for (const ptr of Object.values(BEFORE_ROUTING)) {
    if (!pointerGet(doc, ptr)) problem(`the document has no ${ptr}`);
  }

  const { routes, errors } = tables(args.hcgw);
  staticChecks(doc, routes, errors);
  const project = readFileSync(join(args.source, 'CMakeLists.txt'), 'utf8')
    .match(/project\(hcgw VERSION ([0-9.]+)/);
  if (!project || String(doc.info?.version) !== project[1]) {
    problem(`info.version is ${doc.info?.version}, CMakeLists.txt says hcgw ${project?.[1]}`);
  }

  let count = 0;
  if (args.exchanges) {
    const exchanges = JSON.parse(readFileSync(args.exchanges, 'utf8'));
    const coverage = { ops: new Set(), codes: new Set() };
    for (const ex of exchanges) {
      validateExchange(doc, ex, coverage);
      count++;
    }
    for (const o of operations(doc)) {
      if (!coverage.ops.has(o.op.operationId)) {
        problem(`coverage: no exchange shows ${o.op.operationId} (${o.method} ${o.path}) succeed`);
      }
    }
    for (const c of doc.components?.schemas?.ErrorCode?.enum || []) {
      if (!coverage.codes.has(c) && !args.notExercised.includes(c)) {
        problem(`coverage: no exchange shows the error code ${c}`);
      }
    }
    for (const c of coverage.codes) {
      if (args.notExercised.includes(c)) problem(`coverage: ${c} is exercised after all`);
    }
  }

  for (const p of problems) console.error(p);
  const ops = operations(doc).length;
  console.log(`validate.mjs: ${ops} operations, ${count} exchanges, ${problems.length} problems` +
              (args.mutate ? ` (mutation ${args.mutate})` : ''));
  process.exit(problems.length === 0 ? 0 : 1);
}

main();
