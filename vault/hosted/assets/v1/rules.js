/* Obol hosted fields: card validation rules (runs inside the vault's frames).
 * Mirrors vault/card/validate.go and brand.go: same order, same codes, same
 * messages. vault/card/testdata/validation_cases.json is run against both. */
(function (g) {
  'use strict';
  // [low, high, width, brand], checked in order (vault/card/brand.go).
  var RANGES = [
    [622126, 622925, 6, 'discover'], [6011, 6011, 4, 'discover'], [644, 649, 3, 'discover'], [65, 65, 2, 'discover'],
    [3095, 3095, 4, 'diners'], [300, 305, 3, 'diners'], [36, 36, 2, 'diners'], [38, 39, 2, 'diners'],
    [3528, 3589, 4, 'jcb'], [34, 34, 2, 'amex'], [37, 37, 2, 'amex'],
    [2221, 2720, 4, 'mastercard'], [51, 55, 2, 'mastercard'],
    [5018, 5018, 4, 'maestro'], [5020, 5020, 4, 'maestro'], [5038, 5038, 4, 'maestro'], [5893, 5893, 4, 'maestro'],
    [6304, 6304, 4, 'maestro'], [6759, 6759, 4, 'maestro'], [6761, 6763, 4, 'maestro'],
    [50, 50, 2, 'maestro'], [56, 58, 2, 'maestro'], [62, 62, 2, 'unionpay'], [81, 81, 2, 'unionpay'], [4, 4, 1, 'visa']
  ];
  var LENGTHS = {
    visa: [13, 16, 19], mastercard: [16], amex: [15], discover: [16, 17, 18, 19], jcb: [16, 17, 18, 19],
    diners: [14, 15, 16, 17, 18, 19], unionpay: [16, 17, 18, 19], maestro: [12, 13, 14, 15, 16, 17, 18, 19]
  };
  var MIN = 12, MAX = 19, MAX_RAW = 64;
  var F = { number: 'card.number', expMonth: 'card.exp_month', expYear: 'card.exp_year', cvc: 'card.cvc' };
  // Messages are vault/card/validate.go's, word for word.
  var E = {
    number_required: ['field_required', F.number, 'card number is required'],
    number_invalid_characters: ['number_invalid_characters', F.number, 'card number may contain only the digits 0-9, spaces and dashes'],
    number_invalid_length: ['number_invalid_length', F.number, 'card number must have 12 to 19 digits'],
    number_failed_luhn: ['number_failed_luhn', F.number, 'card number fails the Luhn check'],
    brand_not_supported: ['brand_not_supported', F.number, 'card number does not belong to a supported brand'],
    brand_length: ['number_invalid_length', F.number, 'card number has the wrong number of digits for its brand'],
    exp_month_required: ['field_required', F.expMonth, 'expiry month is required'],
    exp_month_invalid: ['exp_month_invalid', F.expMonth, 'expiry month must be between 1 and 12'],
    exp_year_required: ['field_required', F.expYear, 'expiry year is required'],
    exp_year_invalid: ['exp_year_invalid', F.expYear, 'expiry year must be a four-digit year no more than 50 years ahead'],
    card_expired: ['card_expired', F.expYear, 'card has expired'],
    cvc_invalid: ['cvc_invalid', F.cvc, 'CVC must be 3 digits (4 for American Express)'],
    cvc_required: ['field_required', F.cvc, 'CVC is required']
  };
  function err(k) { var e = E[k]; return { code: e[0], field: e[1], message: e[2] }; }

  function digits(raw) { return String(raw).replace(/[^0-9]/g, ''); }
  function brand(d) {
    for (var i = 0; i < RANGES.length; i++) {
      var r = RANGES[i];
      if (d.length < r[2]) continue;
      var p = parseInt(d.slice(0, r[2]), 10);
      if (p >= r[0] && p <= r[1]) return r[3];
    }
    return '';
  }
  function luhn(d) {
    var sum = 0, dbl = false;
    for (var i = d.length - 1; i >= 0; i--) {
      var n = d.charCodeAt(i) - 48;
      if (dbl) { n *= 2; if (n > 9) n -= 9; }
      sum += n; dbl = !dbl;
    }
    return sum % 10 === 0;
  }
  function accepts(b, n) { return (LENGTHS[b] || []).indexOf(n) >= 0; }
  function maxLength(b) { var l = LENGTHS[b]; return l ? l[l.length - 1] : MAX; }
  // Does the brand issue any length above n (more digits may still come)?
  function mayGrow(b, n) { var l = LENGTHS[b] || [MAX]; return l[l.length - 1] > n; }

  // checkNumber is ParseNumber: null when valid.
  function checkNumber(raw) {
    raw = String(raw);
    if (raw === '') return err('number_required');
    if (raw.length > MAX_RAW) return err('number_invalid_length');
    var d = '';
    for (var i = 0; i < raw.length; i++) {
      var c = raw.charAt(i);
      if (c >= '0' && c <= '9') {
        if (d.length === MAX) return err('number_invalid_length');
        d += c;
      } else if (c !== ' ' && c !== '-') {
        return err('number_invalid_characters');
      }
    }
    if (d.length < MIN) return err('number_invalid_length');
    if (!luhn(d)) return err('number_failed_luhn');
    var b = brand(d);
    if (!b) return err('brand_not_supported');
    if (!accepts(b, d.length)) return err('brand_length');
    return null;
  }
  // checkExpiry is ValidateExpiry; now is a Date (its UTC fields are used).
  function checkExpiry(month, year, now) {
    if (month === 0) return err('exp_month_required');
    if (month < 1 || month > 12) return err('exp_month_invalid');
    if (year === 0) return err('exp_year_required');
    var y = now.getUTCFullYear(), m = now.getUTCMonth() + 1;
    if (year < 1000 || year > 9999 || year > y + 50) return err('exp_year_invalid');
    if (year < y || (year === y && month < m)) return err('card_expired');
    return null;
  }
  // checkCVC is ParseCVC: an empty CVC is valid (card on file).
  function checkCVC(raw, b) {
    raw = String(raw);
    if (raw === '') return null;
    var want = b === 'amex' ? 4 : 3;
    if (raw.length !== want || !/^[0-9]+$/.test(raw)) return err('cvc_invalid');
    return null;
  }
  // validate is card.Parse without the holder name: the first error in field order.
  function validate(c, now) {
    var e = checkNumber(c.number);
    if (e) return e;
    e = checkExpiry(c.exp_month, c.exp_year, now);
    if (e) return e;
    return checkCVC(c.cvc, brand(digits(c.number)));
  }
  // format groups digits for display: Amex 4-6-5, 14-digit Diners 4-6-4, else fours.
  function format(d, b) {
    var groups = b === 'amex' ? [4, 6, 5] : (b === 'diners' && d.length === 14 ? [4, 6, 4] : null);
    var out = [], i = 0;
    if (groups) {
      for (var k = 0; k < groups.length && i < d.length; k++) { out.push(d.slice(i, i + groups[k])); i += groups[k]; }
    } else {
      for (; i < d.length; i += 4) out.push(d.slice(i, i + 4));
    }
    return out.join(' ');
  }
  // parseExpiry reads "MM / YY", "MM/YYYY", "MMYY" into numbers (0 when missing).
  function parseExpiry(raw) {
    var parts = String(raw).split('/');
    var m, y;
    if (parts.length >= 2) { m = digits(parts[0]); y = digits(parts.slice(1).join('')); } else {
      var d = digits(raw); m = d.slice(0, 2); y = d.slice(2);
    }
    var month = m ? parseInt(m, 10) : 0, year = y ? parseInt(y, 10) : 0;
    if (y.length === 2) year += 2000;
    return { month: month, year: year, monthDigits: m.length, yearDigits: y.length };
  }
  g.ObolRules = {
    digits: digits, brand: brand, luhn: luhn, maxLength: maxLength, mayGrow: mayGrow, accepts: accepts,
    checkNumber: checkNumber, checkExpiry: checkExpiry, checkCVC: checkCVC, validate: validate,
    format: format, parseExpiry: parseExpiry, error: err
  };
})(self);
