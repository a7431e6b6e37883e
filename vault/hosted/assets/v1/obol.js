/* obol.js v1: Obol hosted card fields. Card inputs live in iframes served by
 * the vault's own origin; this page receives tokens, PAN-free card metadata
 * and field state only. Plain ES2017, no dependencies. */
(function (global) {
  'use strict';
  var VERSION = 'v1';
  var TYPES = { card: 1, cardNumber: 1, cardExpiry: 1, cardCvc: 1 };
  var EVENTS = { change: 1, focus: 1, blur: 1, ready: 1 };
  var STYLE_KEYS = ['color', 'backgroundColor', 'caretColor', 'fontFamily', 'fontSize', 'lineHeight', 'letterSpacing', 'padding', 'fontWeight', 'fontStyle', 'textAlign', 'textTransform'];
  var UNSAFE = /url\s*\(|expression|[;{}<>\\@]/i;
  // The script's own URL, read while it runs: the default vault origin.
  var SCRIPT_SRC = (document.currentScript && document.currentScript.src) || '';

  function ObolError(type, code, message, field) {
    var e = new Error(message); e.name = 'ObolError'; e.type = type; e.code = code; e.field = field || '';
    return e;
  }
  function plainError(type, code, message, field) { return { type: type, code: code, message: message, field: field || '' }; }
  function randomId() {
    var b = new Uint8Array(12); (global.crypto || global.msCrypto).getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }
  // checkStyle refuses anything outside the allowlist, so a typo is loud.
  function checkStyle(style) {
    if (style == null) return {};
    if (typeof style !== 'object') throw ObolError('invalid_request', 'style_invalid', 'style must be an object', 'style');
    Object.keys(style).forEach(function (variant) {
      if (['base', 'invalid', 'complete'].indexOf(variant) < 0) throw ObolError('invalid_request', 'style_invalid', 'unknown style variant ' + variant + ' (base, invalid, complete)', 'style.' + variant);
      var v = style[variant] || {};
      Object.keys(v).forEach(function (k) {
        if (k === '::placeholder' && variant === 'base') return checkValue('base.::placeholder.color', (v[k] || {}).color);
        if (STYLE_KEYS.indexOf(k) < 0) throw ObolError('invalid_request', 'style_invalid', 'style property ' + k + ' is not allowed', 'style.' + variant + '.' + k);
        checkValue(variant + '.' + k, v[k]);
      });
    });
    return style;
  }
  function checkValue(path, v) {
    if (typeof v !== 'string' || v.length > 200 || UNSAFE.test(v)) throw ObolError('invalid_request', 'style_invalid', 'style value for ' + path + ' must be a plain string without URLs', 'style.' + path);
  }

  function Obol(publishableKey, options) {
    if (!(this instanceof Obol)) return new Obol(publishableKey, options);
    if (typeof publishableKey !== 'string' || !/^pk_(test|live)_/.test(publishableKey)) throw ObolError('invalid_request', 'publishable_key_invalid', 'Obol() needs a publishable key (pk_test_… or pk_live_…)', 'publishableKey');
    options = options || {};
    var url;
    try { url = new URL(options.vaultUrl || SCRIPT_SRC); } catch (e) { url = null; }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) throw ObolError('invalid_request', 'vault_url_invalid', 'options.vaultUrl must be the vault\'s https URL', 'vaultUrl');
    this._pk = publishableKey;
    this._origin = url.origin;
    this._ch = randomId();
    this._elements = [];
    this._pending = {};
    this._seq = 0;
    var self = this;
    this._onMessage = function (ev) { self._receive(ev); };
    global.addEventListener('message', this._onMessage);
  }
  Obol.version = VERSION;

  Obol.prototype.elements = function () {
    var obol = this;
    return {
      create: function (type, opts) {
        if (!TYPES[type]) throw ObolError('invalid_request', 'element_type_invalid', 'unknown element type ' + type + ' (card, cardNumber, cardExpiry, cardCvc)', 'type');
        opts = opts || {};
        checkStyle(opts.style);
        if (opts.token != null && (type !== 'cardCvc' || !/^tok_[A-Za-z0-9_-]{8,}$/.test(opts.token))) throw ObolError('invalid_request', 'token_invalid', 'token is for a cardCvc element and must be a tok_ id', 'token');
        obol._elements.forEach(function (o) {
          if (o._type === type && !o._destroyed && !opts.token && !o._opts.token) throw ObolError('invalid_request', 'element_exists', 'this Obol instance already has a ' + type + ' element', 'type');
        });
        var el = new Element(obol, type, opts);
        obol._elements.push(el);
        return el;
      },
      getElement: function (type) {
        for (var i = 0; i < obol._elements.length; i++) if (obol._elements[i]._type === type && !obol._elements[i]._destroyed) return obol._elements[i];
        return null;
      }
    };
  };

  // createToken resolves {token, card} or {error}; it never rejects. For a
  // cardCvc element bound to a token it attaches the CVC to that token and
  // resolves {token, cvc_expires_at}.
  Obol.prototype.createToken = function (el) {
    var obol = this;
    if (!(el instanceof Element) || el._obol !== this) return Promise.resolve({ error: plainError('invalid_request', 'invalid_element', 'createToken needs an element created by this Obol instance') });
    var target = el;
    if (!el._opts.token && el._type !== 'card') target = this.elements().getElement('cardNumber');
    if (!target || !target._ready) return Promise.resolve({ error: plainError('invalid_request', 'element_not_ready', 'mount the element and wait for its ready event first') });
    var id = ++this._seq;
    return new Promise(function (resolve) {
      var timer = setTimeout(function () {
        delete obol._pending[id];
        resolve({ error: plainError('api_error', 'timeout', 'the vault did not answer in time') });
      }, 30000);
      obol._pending[id] = function (res) { clearTimeout(timer); resolve(res); };
      target._post({ type: 'tokenize', id: id });
    });
  };

  Obol.prototype._receive = function (ev) {
    // Only the vault's own frames, and only the ones this instance created.
    if (ev.origin !== this._origin) return;
    var el = null;
    for (var i = 0; i < this._elements.length; i++) {
      var f = this._elements[i]._frame;
      if (f && f.contentWindow === ev.source) { el = this._elements[i]; break; }
    }
    var d = ev.data;
    if (!el || !d || d.obol !== 1 || d.ch !== this._ch || typeof d.type !== 'string') return;
    el._handle(d);
  };

  Obol.prototype._result = function (d) {
    var done = this._pending[d.id];
    if (!done) return;
    delete this._pending[d.id];
    if (typeof d.token === 'string' && /^tok_[A-Za-z0-9_-]+$/.test(d.token) && typeof d.cvc_expires_at === 'string') {
      done({ token: d.token, cvc_expires_at: d.cvc_expires_at });
    } else if (typeof d.token === 'string' && /^tok_[A-Za-z0-9_-]+$/.test(d.token)) {
      var c = d.card || {};
      done({ token: d.token, card: { brand: String(c.brand || ''), last4: String(c.last4 || '').replace(/[^0-9]/g, '').slice(-4), exp_month: Number(c.exp_month) || 0, exp_year: Number(c.exp_year) || 0 } });
    } else {
      var e = d.error || {};
      done({ error: plainError(String(e.type || 'api_error'), String(e.code || 'internal'), String(e.message || ''), String(e.field || '')) });
    }
  };

  Obol.prototype._neighbour = function (el, step) {
    var order = ['cardNumber', 'cardExpiry', 'cardCvc'], i = order.indexOf(el._type);
    if (i < 0) return null;
    for (var j = i + step; j >= 0 && j < order.length; j += step) {
      var n = this.elements().getElement(order[j]);
      if (n && n._ready) return n;
    }
    return null;
  };

  function Element(obol, type, opts) {
    this._obol = obol; this._type = type; this._opts = opts;
    this._handlers = {}; this._frame = null; this._ready = false; this._destroyed = false;
    this._state = { elementType: type, complete: false, empty: true, brand: 'unknown', error: null };
  }
  Element.prototype.mount = function (target) {
    var node = typeof target === 'string' ? document.querySelector(target) : target;
    if (!node || !node.appendChild) throw ObolError('invalid_request', 'mount_target_invalid', 'mount() needs a CSS selector or a DOM element that exists', 'target');
    if (this._frame) throw ObolError('invalid_request', 'element_mounted', 'this element is already mounted', 'target');
    var o = this._obol, p = new URLSearchParams({ pk: o._pk, origin: global.location.origin, field: this._type, ch: o._ch });
    if (this._opts.token) p.set('token', this._opts.token);
    var f = document.createElement('iframe');
    f.src = o._origin + '/hosted/' + VERSION + '/frame.html?' + p.toString();
    f.title = this._opts.title || 'Secure card payment input';
    f.name = 'obol-' + this._type + '-' + o._ch;
    f.setAttribute('frameborder', '0');
    f.setAttribute('scrolling', 'no');
    f.setAttribute('allow', '');
    f.setAttribute('referrerpolicy', 'origin');
    f.style.cssText = 'border:0;margin:0;padding:0;width:100%;min-width:100%;height:2.6em;display:block;overflow:hidden;background:transparent';
    this._mountedAt = (global.performance && performance.now()) || Date.now();
    this._frame = f;
    node.appendChild(f);
    return this;
  };
  Element.prototype._post = function (msg) {
    if (!this._frame || !this._frame.contentWindow) return;
    msg.obol = 1; msg.ch = this._obol._ch;
    this._frame.contentWindow.postMessage(msg, this._obol._origin);
  };
  Element.prototype._handle = function (d) {
    var o = this._obol;
    switch (d.type) {
      case 'hello':
        this._post({ type: 'init', style: this._opts.style || {}, placeholder: this._opts.placeholder, clientSecret: this._opts.clientSecret, disabled: !!this._opts.disabled });
        break;
      case 'ready':
        if (this._ready) return;
        this._ready = true;
        if (typeof d.height === 'number' && d.height > 0 && d.height < 400) this._frame.style.height = d.height + 'px';
        this._emit('ready', { elementType: this._type, mountMs: ((global.performance && performance.now()) || Date.now()) - this._mountedAt });
        break;
      case 'change':
        this._state = {
          elementType: this._type, complete: d.complete === true, empty: d.empty === true, brand: String(d.brand || 'unknown'),
          error: d.error ? { code: String(d.error.code), message: String(d.error.message), field: String(d.error.field || '') } : null
        };
        this._emit('change', this._state);
        break;
      case 'focus': case 'blur':
        this._emit(d.type, { elementType: this._type });
        break;
      case 'next': case 'prev':
        var n = o._neighbour(this, d.type === 'next' ? 1 : -1);
        if (n) { n._frame.focus(); n._post({ type: 'focus', last: d.type === 'prev' }); }
        break;
      case 'result':
        o._result(d);
        break;
    }
  };
  Element.prototype._emit = function (name, payload) {
    (this._handlers[name] || []).slice().forEach(function (fn) { try { fn(payload); } catch (e) { setTimeout(function () { throw e; }); } });
  };
  Element.prototype.on = function (name, fn) {
    if (!EVENTS[name]) throw ObolError('invalid_request', 'event_invalid', 'unknown event ' + name + ' (change, focus, blur, ready)', 'event');
    if (typeof fn !== 'function') throw ObolError('invalid_request', 'handler_invalid', 'on() needs a function', 'handler');
    (this._handlers[name] = this._handlers[name] || []).push(fn);
    return this;
  };
  Element.prototype.off = function (name, fn) {
    this._handlers[name] = (this._handlers[name] || []).filter(function (h) { return h !== fn; });
    return this;
  };
  Element.prototype.focus = function () { if (this._frame) { this._frame.focus(); this._post({ type: 'focus' }); } };
  Element.prototype.blur = function () { this._post({ type: 'blur' }); };
  Element.prototype.clear = function () { this._post({ type: 'clear' }); };
  Element.prototype.state = function () { return Object.assign({}, this._state); };
  Element.prototype.destroy = function () {
    if (this._frame && this._frame.parentNode) this._frame.parentNode.removeChild(this._frame);
    this._frame = null; this._ready = false; this._destroyed = true; this._handlers = {};
  };

  global.Obol = Obol;
})(window);
