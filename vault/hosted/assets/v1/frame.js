/* Obol hosted fields: the frame. Runs on the vault's origin only; the card
 * number and CVC typed here leave this frame only in the tokenize request to
 * the vault (same origin). The page receives field state and tokens. */
(function () {
  'use strict';
  var R = self.ObolRules;
  var q = new URLSearchParams(location.search);
  var PK = q.get('pk') || '', PARENT = q.get('origin') || '', KIND = q.get('field') || 'card';
  var CH = q.get('ch') || '', TOKEN = q.get('token') || '';
  if (window.parent === window || !PARENT || !/^(card|cardNumber|cardExpiry|cardCvc)$/.test(KIND)) return;
  var FIELDS = { card: ['number', 'expiry', 'cvc'], cardNumber: ['number'], cardExpiry: ['expiry'], cardCvc: ['cvc'] }[KIND];
  var LABELS = { number: 'Card number', expiry: 'Expiration date (MM / YY)', cvc: 'Security code (CVC)' };
  var PLACEHOLDERS = { number: '1234 1234 1234 1234', expiry: 'MM / YY', cvc: 'CVC' };
  var AUTOCOMPLETE = { number: 'cc-number', expiry: 'cc-exp', cvc: 'cc-csc' };
  var NAMES = { number: 'cardnumber', expiry: 'exp-date', cvc: 'cvc' };
  var form = document.getElementById('form'), status = document.getElementById('status');
  var inputs = {}, shown = {}, brand = '', clientSecret = '', initDone = false, busy = false;
  // Sibling frames of one Obol instance (split fields) talk over a
  // same-origin channel: the page cannot join it.
  var chan = (KIND !== 'card' && CH && self.BroadcastChannel) ? new BroadcastChannel('obol:' + CH) : null;
  if (KIND !== 'card') form.className = 'single';

  function send(msg) { msg.obol = 1; msg.ch = CH; window.parent.postMessage(msg, PARENT); }

  FIELDS.forEach(function (f) {
    var wrap = document.createElement('div'); wrap.className = 'f ' + f;
    var label = document.createElement('label'); label.className = 'sr'; label.htmlFor = 'obol-' + f; label.textContent = LABELS[f];
    var el = document.createElement('input');
    el.id = 'obol-' + f; el.name = NAMES[f]; el.type = 'text'; el.inputMode = 'numeric';
    el.autocomplete = AUTOCOMPLETE[f]; el.placeholder = PLACEHOLDERS[f]; el.spellcheck = false;
    el.setAttribute('autocorrect', 'off'); el.setAttribute('aria-invalid', 'false');
    el.setAttribute('aria-describedby', 'status');
    if (f === 'cvc') el.maxLength = 4;
    wrap.appendChild(label); wrap.appendChild(el); form.appendChild(wrap);
    inputs[f] = el;
    el.addEventListener('input', function () { onInput(f); });
    el.addEventListener('focus', function () { send({ type: 'focus' }); });
    el.addEventListener('blur', function () { shown[f] = true; update(); send({ type: 'blur' }); });
    el.addEventListener('keydown', function (ev) { onKey(f, ev); });
  });
  form.addEventListener('submit', function (ev) { ev.preventDefault(); });

  // Keep the caret after the same number of digits when reformatting.
  function reformat(el, text) {
    var pos = el.selectionStart, before = R.digits(el.value.slice(0, pos)).length;
    el.value = text;
    var i = 0, seen = 0;
    while (i < text.length && seen < before) { if (text.charAt(i) >= '0' && text.charAt(i) <= '9') seen++; i++; }
    if (document.activeElement === el) el.setSelectionRange(i, i);
  }
  function onInput(f) {
    var el = inputs[f];
    if (f === 'number') {
      var d = R.digits(el.value); var b = R.brand(d); d = d.slice(0, R.maxLength(b));
      reformat(el, R.format(d, b));
      if (b !== brand) { brand = b; if (chan) chan.postMessage({ t: 'brand', brand: b }); }
      if (!R.checkNumber(d) && (!R.mayGrow(b, d.length) || d.length >= 16)) advance(f);
    } else if (f === 'expiry') {
      var v = el.value, out;
      if (v.indexOf('/') >= 0 && R.digits(v).length > 4) { // autofill: MM/YYYY
        var p = R.parseExpiry(v); out = pad(p.month) + ' / ' + String(p.year % 100);
      } else {
        var e = R.digits(v).slice(0, 4);
        if (e.length === 1 && e > '1') e = '0' + e;
        out = e.length > 2 ? e.slice(0, 2) + ' / ' + e.slice(2) : e;
      }
      reformat(el, out);
      if (R.digits(out).length === 4 && !expiryError(true)) advance(f);
    } else {
      var c = R.digits(el.value).slice(0, brand === 'amex' ? 4 : (brand ? 3 : 4));
      reformat(el, c);
    }
    update();
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function onKey(f, ev) {
    // Backspace in an empty field goes back to the previous one.
    if (ev.key === 'Backspace' && inputs[f].value === '') {
      var i = FIELDS.indexOf(f);
      if (i > 0) { ev.preventDefault(); inputs[FIELDS[i - 1]].focus(); } else if (KIND !== 'card') send({ type: 'prev' });
    }
  }
  function advance(f) {
    var i = FIELDS.indexOf(f);
    if (i >= 0 && i < FIELDS.length - 1) inputs[FIELDS[i + 1]].focus(); else if (KIND !== 'card') send({ type: 'next' });
  }

  function numberError(final) {
    var d = R.digits(inputs.number.value);
    if (d === '') return final ? R.error('number_required') : null;
    var e = R.checkNumber(d);
    if (!e) return null;
    if (final || shown.number) return e;
    // While typing, only what more digits cannot fix.
    if (e.code === 'brand_not_supported' || (d.length >= R.maxLength(R.brand(d)) && e.code !== 'field_required')) return e;
    if (d.length >= 6 && !R.brand(d)) return R.error('brand_not_supported');
    return null;
  }
  function expiryValue() { return R.parseExpiry(inputs.expiry.value); }
  function expiryError(final) {
    var v = inputs.expiry.value;
    if (R.digits(v) === '') return final ? R.error('exp_month_required') : null;
    var p = expiryValue();
    if (p.month > 12 || (p.monthDigits === 2 && p.month === 0)) return R.error('exp_month_invalid');
    if (p.yearDigits < 2) return (final || shown.expiry) ? (p.yearDigits === 0 ? R.error('exp_year_required') : R.error('exp_year_invalid')) : null;
    return R.checkExpiry(p.month, p.year, new Date());
  }
  function cvcError(final) {
    var c = inputs.cvc.value;
    if (c === '') return final ? R.error('cvc_required') : null;
    var want = brand === 'amex' ? 4 : 3;
    if (c.length < want && !final && !shown.cvc) return null;
    return R.checkCVC(c, brand || (c.length === 4 ? 'amex' : ''));
  }
  var checks = { number: numberError, expiry: expiryError, cvc: cvcError };
  function fieldError(f, final) { return checks[f](final); }
  function complete(f) {
    var v = inputs[f].value;
    return v !== '' && !fieldError(f, true);
  }
  var last = '';
  function update() {
    var err = null, all = true, empty = true;
    FIELDS.forEach(function (f) {
      var e = fieldError(f, false);
      inputs[f].setAttribute('aria-invalid', e ? 'true' : 'false');
      applyState(inputs[f], e ? 'invalid' : (complete(f) ? 'complete' : 'base'));
      if (e && !err) err = e;
      if (!complete(f)) all = false;
      if (inputs[f].value !== '') empty = false;
    });
    status.textContent = err ? err.message : '';
    var st = { type: 'change', complete: all, empty: empty, brand: brand || 'unknown', error: err ? { code: err.code, field: err.field, message: err.message } : null };
    var key = JSON.stringify(st);
    if (key !== last) { last = key; send(st); }
  }

  // Styling: only allowlisted properties with plain values, set through the
  // CSSOM (no style sheet text, no URLs).
  var LEN = '\\d{1,3}(\\.\\d{1,3})?(px|em|rem|%)?';
  var COLOR = /^(#[0-9a-fA-F]{3,8}|rgba?\(\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*(,\s*(0|1|0?\.\d{1,3})\s*)?\)|[a-zA-Z]{3,20})$/;
  var ALLOWED = {
    color: COLOR, backgroundColor: COLOR, caretColor: COLOR,
    fontFamily: /^[a-zA-Z0-9 ,'"-]{1,200}$/, fontSize: new RegExp('^' + LEN + '$'), lineHeight: new RegExp('^' + LEN + '$'),
    letterSpacing: new RegExp('^' + LEN + '$'), padding: new RegExp('^' + LEN + '( ' + LEN + '){0,3}$'),
    fontWeight: /^(normal|bold|lighter|bolder|[1-9]00)$/, fontStyle: /^(normal|italic)$/,
    textAlign: /^(left|right|center)$/, textTransform: /^(none|uppercase|lowercase)$/
  };
  var styles = { base: {}, invalid: {}, complete: {} };
  function clean(obj) {
    var out = {};
    if (!obj || typeof obj !== 'object') return out;
    Object.keys(ALLOWED).forEach(function (k) {
      if (typeof obj[k] === 'string' && ALLOWED[k].test(obj[k])) out[k] = obj[k];
    });
    return out;
  }
  function applyState(el, state) {
    var s = Object.assign({}, styles.base, state === 'base' ? {} : styles[state]);
    Object.keys(ALLOWED).forEach(function (k) { el.style[k] = s[k] || ''; });
  }
  function init(d) {
    var st = d.style || {};
    styles = { base: clean(st.base), invalid: clean(st.invalid), complete: clean(st.complete) };
    ['fontFamily', 'fontSize', 'color'].forEach(function (k) { if (styles.base[k]) document.body.style[k] = styles.base[k]; });
    var ph = st.base && st.base['::placeholder'] && st.base['::placeholder'].color;
    if (typeof ph === 'string' && COLOR.test(ph)) document.documentElement.style.setProperty('--ph', ph);
    var pl = d.placeholder;
    if (pl && typeof pl === 'object') FIELDS.forEach(function (f) { if (typeof pl[f] === 'string') inputs[f].placeholder = pl[f].slice(0, 40); });
    else if (typeof pl === 'string' && FIELDS.length === 1) inputs[FIELDS[0]].placeholder = pl.slice(0, 40);
    if (typeof d.clientSecret === 'string') clientSecret = d.clientSecret;
    if (d.disabled) FIELDS.forEach(function (f) { inputs[f].disabled = true; });
    FIELDS.forEach(function (f) { applyState(inputs[f], 'base'); });
    initDone = true;
    send({ type: 'ready', height: Math.ceil(document.documentElement.getBoundingClientRect().height) });
  }

  // Split fields: answer the number frame's collection over the channel.
  if (chan) {
    chan.onmessage = function (ev) {
      var m = ev.data || {};
      if (m.t === 'brand' && KIND === 'cardCvc') { brand = m.brand || ''; update(); return; }
      if (m.t !== 'collect') return;
      if (KIND === 'cardExpiry') {
        var p = expiryValue(), e = expiryError(true);
        shown.expiry = true; update();
        chan.postMessage({ t: 'value', rid: m.rid, field: 'expiry', month: p.month, year: p.year, error: e });
      } else if (KIND === 'cardCvc' && !TOKEN) {
        var ce = cvcError(true);
        shown.cvc = true; update();
        chan.postMessage({ t: 'value', rid: m.rid, field: 'cvc', cvc: inputs.cvc.value, error: ce });
      }
    };
  }
  function collect(want) {
    return new Promise(function (resolve) {
      var rid = Math.random().toString(36).slice(2), got = {}, n = 0;
      var timer = setTimeout(done, 1500);
      function done() { clearTimeout(timer); chan.removeEventListener('message', on); resolve(got); }
      function on(ev) {
        var m = ev.data || {};
        if (m.t !== 'value' || m.rid !== rid || got[m.field]) return;
        got[m.field] = m; n++;
        if (n === want.length) done();
      }
      chan.addEventListener('message', on);
      chan.postMessage({ t: 'collect', rid: rid });
    });
  }

  function fail(id, e, type) {
    send({ type: 'result', id: id, error: { type: type || 'validation_error', code: e.code, field: e.field || '', message: e.message } });
  }
  function post(path, auth, body) {
    return fetch(path, { method: 'POST', credentials: 'omit', cache: 'no-store', headers: { 'Content-Type': 'application/json', 'Authorization': 'Bearer ' + auth }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); });
  }
  function answer(id, res) {
    if (res.ok && res.body && typeof res.body.token === 'string' && TOKEN) {
      send({ type: 'result', id: id, token: res.body.token, cvc_expires_at: String(res.body.cvc_expires_at || '') });
    } else if (res.ok && res.body && typeof res.body.token === 'string') {
      var c = res.body.card || {};
      send({ type: 'result', id: id, token: res.body.token, card: { brand: c.brand, last4: c.last4, exp_month: c.exp_month, exp_year: c.exp_year } });
    } else {
      var e = (res.body && res.body.error) || {};
      fail(id, { code: e.code || 'internal', field: e.field, message: e.message || 'the vault refused the request' }, 'api_error');
    }
  }
  function tokenize(id) {
    FIELDS.forEach(function (f) { shown[f] = true; });
    update();
    if (TOKEN) return recollect(id);
    if (FIELDS.indexOf('number') < 0) return fail(id, { code: 'invalid_element', message: 'createToken needs the card or cardNumber element' }, 'invalid_request');
    var work = KIND === 'card' ? Promise.resolve({}) : (chan ? collect(['expiry', 'cvc']) : Promise.resolve({}));
    work.then(function (got) {
      var e = numberError(true);
      if (e) return fail(id, e);
      var month, year, cvc;
      if (KIND === 'card') {
        e = expiryError(true) || cvcError(true);
        if (e) return fail(id, e);
        var p = expiryValue(); month = p.month; year = p.year; cvc = inputs.cvc.value;
      } else {
        if (!got.expiry) return fail(id, R.error('exp_month_required'));
        if (got.expiry.error) return fail(id, got.expiry.error);
        if (got.cvc && got.cvc.error) return fail(id, got.cvc.error);
        month = got.expiry.month; year = got.expiry.year; cvc = got.cvc ? got.cvc.cvc : '';
      }
      var number = R.digits(inputs.number.value);
      e = R.validate({ number: number, exp_month: month, exp_year: year, cvc: cvc }, new Date());
      if (e) return fail(id, e);
      busy = true;
      return post('tokens', PK, { origin: PARENT, card: { number: number, exp_month: month, exp_year: year, cvc: cvc } })
        .then(function (res) { answer(id, res); });
    }).catch(function () {
      fail(id, { code: 'vault_unreachable', message: 'the vault could not be reached' }, 'api_error');
    }).then(function () { busy = false; });
  }
  // Card on file: attach a fresh CVC to TOKEN with the client secret.
  function recollect(id) {
    var e = cvcError(true);
    if (e) return fail(id, e);
    if (!clientSecret) return fail(id, { code: 'client_secret_required', field: 'client_secret', message: 'this cardCvc element needs the clientSecret your backend created for the token' }, 'invalid_request');
    post('cvc', PK, { origin: PARENT, token: TOKEN, client_secret: clientSecret, cvc: inputs.cvc.value })
      .then(function (res) { answer(id, res); })
      .catch(function () { fail(id, { code: 'vault_unreachable', message: 'the vault could not be reached' }, 'api_error'); });
  }

  window.addEventListener('message', function (ev) {
    // Only the parent page on the origin this frame was issued for.
    if (ev.origin !== PARENT || ev.source !== window.parent) return;
    var d = ev.data;
    if (!d || d.obol !== 1 || d.ch !== CH || typeof d.type !== 'string') return;
    if (d.type === 'init') { if (!initDone) init(d); return; }
    if (!initDone) return;
    if (d.type === 'tokenize' && typeof d.id === 'number' && !busy) tokenize(d.id);
    else if (d.type === 'focus') { inputs[d.last ? FIELDS[FIELDS.length - 1] : FIELDS[0]].focus(); }
    else if (d.type === 'blur') { if (document.activeElement) document.activeElement.blur(); }
    else if (d.type === 'clear') { FIELDS.forEach(function (f) { inputs[f].value = ''; shown[f] = false; }); update(); }
  });
  send({ type: 'hello' });
})();
