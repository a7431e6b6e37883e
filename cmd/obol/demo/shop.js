// The demo shop's checkout: the card element comes from the vault; this page
// only ever holds a token, and its backend charges the token.
(function () {
  'use strict';
  var body = document.body;
  var obol = Obol(body.dataset.pk, { vaultUrl: body.dataset.vault });
  var box = document.getElementById('card-element');
  var errors = document.getElementById('card-errors');
  var button = document.getElementById('submit');
  var style = {
    base: { fontSize: '16px', color: '#1a1a2e', fontFamily: 'system-ui, sans-serif', '::placeholder': { color: '#9aa0a6' } },
    invalid: { color: '#c0262d' }
  };
  // ?layout=split shows one frame per field (cardNumber, cardExpiry, cardCvc).
  var split = new URLSearchParams(location.search).get('layout') === 'split';
  var elements = obol.elements();
  var card, parts = [];
  if (split) {
    box.classList.add('split');
    ['cardNumber', 'cardExpiry', 'cardCvc'].forEach(function (type) {
      var slot = document.createElement('div');
      slot.className = 'part ' + type;
      box.appendChild(slot);
      var el = elements.create(type, { style: style });
      el.mount(slot);
      parts.push(el);
    });
    card = parts[0];
  } else {
    card = elements.create('card', { style: style });
  }
  var all = split ? parts : [card];
  var ready = 0, states = {};
  all.forEach(function (el, i) {
    el.on('ready', function (e) {
      ready++;
      if (ready === all.length) { window.obolDemo.readyMs = e.mountMs; button.disabled = false; }
    });
    el.on('focus', function () { box.classList.add('focused'); });
    el.on('blur', function () { box.classList.remove('focused'); });
    el.on('change', function (e) {
      states[i] = e;
      var err = null;
      Object.keys(states).forEach(function (k) { if (!err && states[k].error) err = states[k].error; });
      errors.textContent = err ? err.message : '';
      errors.dataset.code = err ? err.code : '';
      box.classList.toggle('invalid', !!err);
    });
  });
  if (!split) card.mount(box);
  window.obolDemo = { card: card, parts: parts, obol: obol };

  document.getElementById('pay').addEventListener('submit', function (ev) {
    ev.preventDefault();
    button.disabled = true;
    obol.createToken(card).then(function (res) {
      if (res.error) {
        errors.textContent = res.error.message;
        errors.dataset.code = res.error.code;
        button.disabled = false;
        return null;
      }
      window.obolDemo.lastToken = res.token;
      return fetch('/api/pay', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: res.token }) })
        .then(function (r) { return r.json(); })
        .then(function (p) { show(p, res); });
    }).catch(function () { errors.textContent = 'Something went wrong; please retry.'; button.disabled = false; });
  });

  // Card on file: the backend mints a single-use client secret for the
  // token, and a cardCvc element bound to it collects a fresh CVC.
  var saved = null;
  document.getElementById('again').addEventListener('click', function () {
    fetch('/api/cvc-secret', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: saved.token }) })
      .then(function (r) { return r.json(); })
      .then(function (cs) {
        document.getElementById('result').hidden = true;
        document.getElementById('onfile').hidden = false;
        document.getElementById('onfile-card').textContent = saved.card.brand + ' •••• ' + saved.card.last4;
        var cvc = elements.create('cardCvc', { token: saved.token, clientSecret: cs.client_secret, style: style });
        var payBtn = document.getElementById('onfile-pay'), cvcErr = document.getElementById('cvc-errors');
        cvc.on('ready', function () { payBtn.disabled = false; window.obolDemo.cvcReady = true; });
        cvc.on('change', function (e) { cvcErr.textContent = e.error ? e.error.message : ''; cvcErr.dataset.code = e.error ? e.error.code : ''; });
        cvc.mount('#cvc-element');
        window.obolDemo.cvc = cvc;
        payBtn.addEventListener('click', function () {
          payBtn.disabled = true;
          obol.createToken(cvc).then(function (res) {
            if (res.error) { cvcErr.textContent = res.error.message; cvcErr.dataset.code = res.error.code; payBtn.disabled = false; return null; }
            return fetch('/api/pay', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: res.token }) })
              .then(function (r) { return r.json(); })
              .then(function (p) { document.getElementById('onfile').hidden = true; show(p, saved); });
          });
        });
      });
  });

  function show(p, res) {
    saved = res;
    var ok = p.status === 'authorized' || p.status === 'captured';
    document.getElementById('pay').hidden = true;
    var sec = document.getElementById('result');
    sec.hidden = false;
    sec.className = ok ? 'ok' : 'bad';
    document.getElementById('result-title').textContent = ok ? 'Payment ' + p.status : 'Payment ' + (p.status || 'failed') + (p.decline_code ? ': ' + p.decline_code : (p.error ? ': ' + p.error : ''));
    document.getElementById('result-id').textContent = p.id || '—';
    document.getElementById('result-status').textContent = p.status || 'error';
    document.getElementById('result-card').textContent = res.card.brand + ' •••• ' + res.card.last4 + ', ' + res.card.exp_month + '/' + res.card.exp_year;
    document.getElementById('result-token').textContent = res.token;
  }
})();
