/*
 * otad console: the management API (/api/v1/) in a browser. The token
 * stays in this tab's sessionStorage and goes out as an Authorization
 * header, never as a cookie. Everything devices send is put on the page
 * as text (textContent), never as markup.
 */
'use strict';

(function () {
  const TOKEN = 'otad.token';
  const REFRESH_MS = 2000;
  const STEERS = ['operator', 'admin'];
  let me = null; /* {operator, role, approvals} */
  let timer = null;
  let page = '';

  const $ = (id) => document.getElementById(id);

  /* An element with attributes and children (strings become text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function when(t) {
    if (!t) return 'never';
    return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
  }

  function duration(s) {
    if (s === undefined || s === null) return '-';
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function pct(x) {
    return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + '%';
  }

  function text(v) {
    return v === undefined || v === null || v === '' ? '-' : String(v);
  }

  function say(msg, isError) {
    const s = $('status');
    s.textContent = msg || '';
    s.className = 'status' + (isError ? ' error' : '');
  }

  class Unauthorized extends Error {}

  async function api(method, path, body) {
    const opts = {
      method: method,
      cache: 'no-store',
      headers: { 'Authorization': 'Bearer ' + sessionStorage.getItem(TOKEN) }
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch('/api/v1/' + path, opts);
    let doc = null;
    try { doc = await r.json(); } catch (e) { doc = null; }
    if (r.status === 401) throw new Unauthorized((doc && doc.error) || 'refused');
    if (!r.ok) throw new Error((doc && doc.error) || ('HTTP ' + r.status));
    return doc;
  }

  function table(rows, cols, cell) {
    const head = el('tr', null, cols.map((c) => el('th', null, c[1])));
    const body = rows.map((row) => el('tr', null, cols.map((c) =>
      el('td', null, cell ? cell(row, c[0]) : text(row[c[0]])))));
    return el('div', { class: 'scroll' }, el('table', null, el('thead', null, head),
      el('tbody', null, body)));
  }

  /* ---- signing in ---- */

  function showSignin(message) {
    stopRefresh();
    me = null;
    sessionStorage.removeItem(TOKEN);
    $('nav').hidden = true;
    $('signout').hidden = true;
    $('who').textContent = '';
    $('view').replaceChildren();
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  async function signIn(token) {
    sessionStorage.setItem(TOKEN, token);
    try {
      me = await api('GET', 'whoami');
    } catch (e) {
      showSignin(e instanceof Unauthorized ? 'That token was refused: ' +
        e.message : e.message);
      return;
    }
    if (me.role === 'ci') {
      showSignin('A ci token can upload artifacts and create releases only; ' +
        'the console needs a viewer, operator or admin token.');
      return;
    }
    $('signin').hidden = true;
    $('nav').hidden = false;
    $('signout').hidden = false;
    $('who').textContent = me.operator + ' (' + me.role + ')';
    route();
  }

  function steers() {
    return me && STEERS.includes(me.role);
  }

  /* ---- pages ---- */

  function stopRefresh() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  /* Draw a page; live pages redraw every REFRESH_MS (not under a dialog). */
  async function show(draw, live) {
    stopRefresh();
    const mine = page;
    const once = async () => {
      if ($('confirm').open || mine !== page) return;
      try {
        const view = await draw();
        if (mine === page && !$('confirm').open) $('view').replaceChildren(view);
      } catch (e) {
        if (e instanceof Unauthorized) showSignin('Signed out: ' + e.message);
        else say(e.message, true);
      }
    };
    await once();
    if (live && mine === page) timer = setInterval(once, REFRESH_MS);
  }

  function counts(rows, key) {
    return table(rows, [[key, key[0].toUpperCase() + key.slice(1)],
      ['devices', 'Devices']]);
  }

  async function fleetPage() {
    const f = await api('GET', 'fleet');
    return el('div', null,
      el('h1', null, 'Fleet'),
      el('div', { class: 'card numbers', id: 'fleet-numbers' },
        el('div', { class: 'number' }, el('b', null, f.devices), 'devices'),
        el('div', { class: 'number' }, el('b', null, f.online), 'online'),
        el('div', { class: 'number' }, el('b', null, f.offline), 'offline')),
      el('div', { class: 'grid' },
        el('div', { class: 'card' }, el('h2', null, 'Per version'), counts(f.versions, 'version')),
        el('div', { class: 'card' }, el('h2', null, 'Per chip'), counts(f.chips, 'chip')),
        el('div', { class: 'card' }, el('h2', null, 'Per product'), counts(f.products, 'product'))),
      el('div', { class: 'card' }, el('h2', null, 'Rollouts under way'),
        f.rollouts.length ? table(f.rollouts, [['rollout', 'Rollout'],
          ['version', 'Version'], ['product', 'Product'], ['state', 'State'],
          ['stage', 'Stage']], (r, k) => k === 'rollout' ?
          el('a', { href: '#rollouts' }, String(r.rollout)) : text(r[k])) :
          el('p', { class: 'muted' }, 'None.')),
      el('div', { class: 'card', id: 'failures' },
        el('h2', null, 'Failed or rolled back in the last 24 hours'),
        f.failures.length ? table(f.failures, [['device', 'Device'],
          ['from_version', 'From'], ['to_version', 'To'], ['state', 'Outcome'],
          ['reason', 'Reason'], ['finished_at', 'When']], (r, k) =>
          k === 'device' ? el('a', { href: '#device/' + encodeURIComponent(r.device) }, r.device) :
          k === 'finished_at' ? when(r.finished_at) :
          k === 'state' ? r.state + (r.inferred ? ' (inferred)' : '') : text(r[k])) :
          el('p', { class: 'muted' }, 'None.')));
  }

  function ringName(st) {
    if (st.group) return 'group ' + st.group;
    return st.devices != null ? st.devices + ' devices' : st.percent + '% of the fleet';
  }

  const SEGMENTS = [['succeeded', 'succeeded'], ['rolled_back', 'rolled back'],
    ['failed', 'failed'], ['in_progress', 'in progress'], ['deferred', 'deferred']];

  /* A stage as a bar of its devices, its counts, and rates against bounds. */
  function ring(ro, st) {
    const failed = (st.failed || 0) + (st.timed_out || 0);
    const n = { succeeded: st.succeeded, rolled_back: st.rolled_back,
      failed: failed, in_progress: st.in_progress, deferred: st.deferred || 0 };
    const whole = Math.max(st.targeted || 0, st.offered || 0, 1);
    const bar = el('div', { class: 'bar', role: 'img', 'aria-label':
      SEGMENTS.map((s) => n[s[0]] + ' ' + s[1]).join(', ') + ' of ' + whole });
    for (const [k] of SEGMENTS) {
      if (n[k] > 0) bar.append(el('span', { class: 's-' + k, style: null,
        'data-count': n[k], title: n[k] + ' ' + k }));
    }
    /* widths set through the CSSOM: the CSP allows no inline style attribute */
    let i = 0;
    for (const [k] of SEGMENTS) {
      if (n[k] > 0) bar.children[i++].style.width = (100 * n[k] / whole) + '%';
    }
    const crossed = st.breach || '';
    const rate = (name, value, bound, op) => el('span', {
      class: crossed.startsWith(name) ? 'crossed' : null },
      name + ' ' + pct(value) + ' (' + op + ' ' + pct(bound) + ')');
    const current = ro.staged && st.no === ro.stage && ro.state !== 'completed';
    return el('div', { class: 'ring' + (current ? ' current' : ''), 'data-stage': st.no },
      el('div', { class: 'label' },
        el('b', null, 'Stage ' + st.no + ': ' + ringName(st)),
        el('span', { class: 'muted' }, current && st.soak_left !== undefined ?
          'soak left ' + duration(st.soak_left) : 'soak ' + duration(st.soak_s))),
      bar,
      el('div', { class: 'legend' },
        'targeted ' + text(st.targeted) + ' · offered ' + st.offered + ' · ',
        SEGMENTS.map((s, j) => [el('i', { class: 's-' + s[0] }),
          n[s[0]] + ' ' + s[1] + (j < SEGMENTS.length - 1 ? ' · ' : '')]),
        st.inferred_succeeded || st.inferred_rolled_back ?
          ' (inferred: ' + st.inferred_succeeded + ' succeeded, ' +
          st.inferred_rolled_back + ' rolled back)' : ''),
      el('div', { class: 'rates' },
        rate('success', st.success_rate, st.min_success, '≥'), ' · ',
        rate('rollback', st.rollback_rate, st.max_rollback, '≤'), ' · ',
        rate('failure', st.failure_rate, st.max_failure, '≤'), ' · ',
        rate('crash', st.crash_rate, st.max_crash, '≤'),
        ' · at least ' + st.min_devices + ' finished',
        crossed ? el('div', { class: 'crossed' }, 'bound crossed: ' + crossed) : null),
      (st.compared || []).length ? el('div', { class: 'compared' },
        st.compared.map((c) => el('div', {
          class: c.state === 'breach' ? 'crossed' : null, 'data-compare': c.name },
          c.compare + ': updated ' + num(c.updated) + ' (' + c.updated_devices +
          ' devices) against ' + num(c.control) + ' not updated (' +
          c.control_devices + ' devices)' + (c.state === 'sample' ?
            ': too few devices to judge' : c.state === 'breach' ? ': bound crossed' : '')))) : null);
  }

  /* a comparison's value: whole numbers as they are, others to 3 digits */
  function num(v) {
    return Number.isInteger(v) ? String(v) : Number(v).toPrecision(3);
  }

  /* What each action does, for its confirmation. */
  function actionsOf(ro) {
    const name = 'rollout ' + ro.id + ' (' + (ro.product ? ro.product + ' ' : '') +
      ro.version + ')';
    const a = [];
    if (ro.state === 'draft') {
      if (me.approvals >= 2) a.push(['approve', 'Approve and start',
        'Approve and start ' + name + '? You must not be the operator who created it.']);
      else a.push(['start', 'Start', 'Start ' + name + '? Its first stage is offered now.']);
    }
    if (ro.state === 'active') a.push(['pause', 'Pause', 'Pause ' + name +
      '? No device is offered it until it resumes; downloads under way finish.']);
    if (ro.state === 'paused') a.push(['resume', 'Resume', 'Resume ' + name +
      '? Its current stage is offered again.']);
    const reverting = ro.revert && ro.revert.state === 'active';
    if (ro.state === 'halted' && !reverting) a.push(['resume', 'Resume despite the halt',
      'Resume ' + name + ' although it halted (' + (ro.reason || 'no reason') +
      ')? It is offered again as if its bounds had held.', { force: true }]);
    if (ro.state === 'halted' && reverting) {
      a.push(['resume', 'Resume, keep reverted devices back',
        'Resume ' + name + ' although it halted (' + (ro.reason || 'no reason') +
        ')? The revert ends; the devices it took back to ' + ro.revert.version +
        ' stay there and are not offered ' + ro.version + ' again.',
        { force: true, reverted: 'keep' }]);
      a.push(['resume', 'Resume, offer it to reverted devices too',
        'Resume ' + name + ' although it halted (' + (ro.reason || 'no reason') +
        ')? The revert ends; the devices it took back to ' + ro.revert.version +
        ' are offered ' + ro.version + ' again as the rollout goes on.',
        { force: true, reverted: 'offer' }]);
    }
    if (['draft', 'active', 'paused', 'halted'].includes(ro.state)) {
      a.push(['abort', 'Abort', 'Abort ' + name + '? It is never offered again; ' +
        'devices that took it keep it.']);
    }
    return a;
  }

  function confirmThen(message, label, go) {
    const d = $('confirm');
    $('confirm-text').textContent = message;
    $('confirm-ok').textContent = label;
    $('confirm-ok').onclick = async () => { d.close(); await go(); };
    $('confirm-cancel').onclick = () => d.close();
    d.showModal();
  }

  function rolloutCard(ro) {
    const card = el('div', { class: 'card rollout', id: 'rollout-' + ro.id,
      'data-state': ro.state });
    card.append(el('h2', null, 'Rollout ' + ro.id + ': ' + ro.version +
      (ro.product ? ' for ' + ro.product : '') + ' ',
      el('span', { class: 'badge ' + ro.state }, ro.state)));
    if (ro.reason) card.append(el('p', { class: 'reason' }, ro.reason));
    if (ro.revert) {
      const r = ro.revert;
      card.append(el('p', { class: 'revert' }, 'Reverted to ' + r.version +
        ' (rollout ' + r.rollout + ', ' + r.state + '): ' + r.succeeded + ' back of ' +
        r.offered + ' offered, ' + (r.failed + r.rolled_back + r.timed_out) +
        ' failed, ' + r.in_progress + ' in progress.'));
      if (ro.stranded && ro.stranded.length) {
        card.append(el('p', { class: 'reason stranded' }, 'Stranded (their eFuse refuses ' +
          r.version + '): ' + ro.stranded.map(s => s.id).join(', ')));
      }
    }
    card.append(el('p', { class: 'muted' },
      (ro.staged ? 'stage ' + ro.stage + ' of ' + ro.stages.length :
        ro.revert_of ? 'reverting rollout ' + ro.revert_of + ': offered to its devices only' :
        'published to all') +
      ', started ' + when(ro.started)));
    if (steers()) {
      const bar = el('div', { class: 'actions' });
      for (const [verb, label, message, body] of actionsOf(ro)) {
        bar.append(el('button', { type: 'button', class: verb === 'abort' ? 'danger' : 'primary',
          'data-action': verb, onclick: () => confirmThen(message, label, async () => {
            try {
              const r = await api('POST', 'rollouts/' + ro.id + '/' + verb, body || {});
              say('Rollout ' + ro.id + ' ' + r.done + '.');
            } catch (e) {
              if (e instanceof Unauthorized) return showSignin('Signed out: ' + e.message);
              say('Rollout ' + ro.id + ': ' + e.message, true);
            }
            show(rolloutsPage, true);
          }) }, label));
      }
      card.append(bar);
    }
    for (const st of ro.stages) card.append(ring(ro, st));
    return card;
  }

  async function rolloutsPage() {
    const rows = await api('GET', 'rollouts');
    rows.reverse(); /* newest first */
    return el('div', null, el('h1', null, 'Rollouts'),
      rows.length ? rows.map(rolloutCard) : el('p', { class: 'muted' }, 'No rollouts yet.'));
  }

  let search = { prefix: '', group: '', version: '' };

  async function devicesPage() {
    const q = new URLSearchParams({ limit: '100' });
    for (const [k, v] of Object.entries(search)) if (v) q.set(k, v);
    const rows = await api('GET', 'devices?' + q.toString());
    const input = (name, label) => el('input', { name: name, placeholder: label,
      'aria-label': label, value: search[name] });
    const form = el('form', { class: 'search', id: 'device-search' },
      input('prefix', 'id starts with'), input('group', 'group'),
      input('version', 'version'), el('button', { type: 'submit', class: 'primary' }, 'Search'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      for (const k of Object.keys(search)) search[k] = form.elements[k].value.trim();
      show(devicesPage, false);
    });
    return el('div', null, el('h1', null, 'Devices'), form,
      el('div', { class: 'card' }, rows.length ? table(rows, [['id', 'Device'],
        ['version', 'Version'], ['product', 'Product'], ['chip', 'Chip'],
        ['group', 'Group'], ['last_seen', 'Last seen'], ['last_attempt', 'Last attempt']],
      (r, k) => k === 'id' ? el('a', { href: '#device/' + encodeURIComponent(r.id) }, r.id) :
        k === 'last_seen' ? when(r.last_seen) : text(r[k])) :
        el('p', { class: 'muted' }, 'No device matches.'),
      rows.length === 100 ? el('p', { class: 'muted' }, 'The first 100; narrow the search.') : null));
  }

  function facts(obj, keys) {
    return el('dl', { class: 'facts' }, keys.map((k) => [el('dt', null, k[1]),
      el('dd', { 'data-key': k[0] }, k[0].endsWith('_seen') || k[0].endsWith('_at') ||
        k[0] === 'token_created' ? when(obj[k[0]]) : text(obj[k[0]]))]));
  }

  async function devicePage(id) {
    const d = await api('GET', 'devices/' + encodeURIComponent(id));
    const attempts = d.attempts || [];
    return el('div', null, el('h1', null, 'Device ' + d.id),
      el('div', { class: 'grid' },
        el('div', { class: 'card' }, el('h2', null, 'Facts'), facts(d, [
          ['version', 'Version'], ['product', 'Product'], ['chip', 'Chip'],
          ['group', 'Group'], ['hw_rev', 'Hardware'], ['running_sha256', 'Image'],
          ['secure_version', 'Secure version'], ['address', 'Address'],
          ['first_seen', 'First seen'], ['last_seen', 'Last seen'], ['checks', 'Checks'],
          ['blocked', 'Blocked'], ['has_token', 'Has a token']])),
        el('div', { class: 'card' }, el('h2', null, 'Telemetry'), facts(d, [
          ['uptime', 'Uptime (s)'], ['free_heap', 'Free heap'], ['rssi', 'RSSI (dBm)'],
          ['reset_reason', 'Reset reason'], ['battery', 'Battery (%)'],
          ['free_space', 'OTA slot'], ['deferred', 'Waiting because'],
          ['mqtt_seen', 'MQTT seen']]))),
      el('div', { class: 'card' }, el('h2', null, 'Attempts'),
        attempts.length ? el('ol', { class: 'timeline', id: 'timeline' }, attempts.map((a) =>
          el('li', { class: a.state },
            el('b', null, text(a.from_version) + ' → ' + text(a.to_version) + ': ' + a.state),
            a.reason ? el('div', null, a.reason) : null,
            el('div', { class: 'muted' }, 'offered ' + when(a.offered_at) +
              ', last change ' + when(a.updated_at))))) :
          el('p', { class: 'muted' }, 'No attempts.')));
  }

  let auditActor = '';
  let auditBefore = 0;

  async function auditPage() {
    const q = new URLSearchParams({ limit: '50' });
    if (auditActor) q.set('actor', auditActor);
    if (auditBefore) q.set('before', String(auditBefore));
    const rows = await api('GET', 'audit?' + q.toString());
    const form = el('form', { class: 'search', id: 'audit-filter' },
      el('input', { name: 'actor', placeholder: 'operator (op:NAME, otactl:USER, sql)',
        'aria-label': 'operator', value: auditActor }),
      el('button', { type: 'submit', class: 'primary' }, 'Filter'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      auditActor = form.elements.actor.value.trim();
      auditBefore = 0;
      show(auditPage, false);
    });
    const older = rows.length === 50 ? el('button', { type: 'button', onclick: () => {
      auditBefore = rows[rows.length - 1].id;
      show(auditPage, false);
    } }, 'Older') : null;
    const newest = auditBefore ? el('button', { type: 'button', onclick: () => {
      auditBefore = 0;
      show(auditPage, false);
    } }, 'Newest') : null;
    return el('div', null, el('h1', null, 'Audit'), form,
      el('div', { class: 'card' }, rows.length ? table(rows, [['at', 'When'],
        ['actor', 'Who'], ['what', 'What']], (r, k) => k === 'at' ? when(r.at) : text(r[k])) :
        el('p', { class: 'muted' }, 'Nothing recorded.')),
      el('div', { class: 'actions' }, newest, older));
  }

  function route() {
    if (!me) return;
    const hash = decodeURIComponent(location.hash.slice(1)) || 'fleet';
    page = hash;
    say('');
    for (const a of document.querySelectorAll('nav a')) {
      a.classList.toggle('current', hash.startsWith(a.dataset.page));
    }
    if (hash.startsWith('device/')) show(() => devicePage(hash.slice(7)), true);
    else if (hash === 'rollouts') show(rolloutsPage, true);
    else if (hash === 'devices') show(devicesPage, false);
    else if (hash === 'audit') show(auditPage, false);
    else show(fleetPage, true);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      signIn($('token').value.trim());
    });
    $('signout').addEventListener('click', () => showSignin('Signed out.'));
    window.addEventListener('hashchange', route);
    const token = sessionStorage.getItem(TOKEN);
    if (token) signIn(token);
    else showSignin('');
  });
})();
