// Type definitions for obol.js v1 (Obol hosted card fields).
// Load the script from your vault: <script src="https://VAULT/hosted/v1/obol.js"
// integrity="sha384-…" crossorigin="anonymous"></script> (hashes: /hosted/integrity.json).

export type ElementType = 'card' | 'cardNumber' | 'cardExpiry' | 'cardCvc';
export type Brand = 'visa' | 'mastercard' | 'amex' | 'discover' | 'jcb' | 'diners' | 'unionpay' | 'maestro' | 'unknown';

/** Allowlisted style properties: plain values only (no URLs, no arbitrary CSS). */
export interface StyleProperties {
  color?: string;
  backgroundColor?: string;
  caretColor?: string;
  fontFamily?: string;
  fontSize?: string;
  fontWeight?: string;
  fontStyle?: 'normal' | 'italic';
  lineHeight?: string;
  letterSpacing?: string;
  padding?: string;
  textAlign?: 'left' | 'right' | 'center';
  textTransform?: 'none' | 'uppercase' | 'lowercase';
}

export interface Style {
  base?: StyleProperties & { '::placeholder'?: { color?: string } };
  invalid?: StyleProperties;
  complete?: StyleProperties;
}

export interface ElementOptions {
  style?: Style;
  /** One placeholder for a single field, or one per field of the card element. */
  placeholder?: string | { number?: string; expiry?: string; cvc?: string };
  title?: string;
  disabled?: boolean;
  /** cardCvc only: re-collect the CVC for this existing token (card on file). */
  token?: string;
  /** With token: the single-use client secret your backend minted for it. */
  clientSecret?: string;
}

export interface FieldError {
  /** The same codes as the vault's REST errors: number_failed_luhn, card_expired, cvc_invalid, … */
  code: string;
  message: string;
  /** card.number, card.exp_month, card.exp_year or card.cvc */
  field: string;
}

export interface ChangeEvent {
  elementType: ElementType;
  complete: boolean;
  empty: boolean;
  brand: Brand;
  error: FieldError | null;
}

export interface ReadyEvent {
  elementType: ElementType;
  /** Milliseconds from mount() to ready. */
  mountMs: number;
}

export interface FocusEvent {
  elementType: ElementType;
}

export interface ObolElement {
  mount(target: string | HTMLElement): ObolElement;
  on(event: 'change', handler: (e: ChangeEvent) => void): ObolElement;
  on(event: 'ready', handler: (e: ReadyEvent) => void): ObolElement;
  on(event: 'focus' | 'blur', handler: (e: FocusEvent) => void): ObolElement;
  off(event: 'change' | 'ready' | 'focus' | 'blur', handler: (e: any) => void): ObolElement;
  focus(): void;
  blur(): void;
  clear(): void;
  state(): ChangeEvent;
  destroy(): void;
}

export interface Elements {
  create(type: ElementType, options?: ElementOptions): ObolElement;
  getElement(type: ElementType): ObolElement | null;
}

export interface TokenCard {
  brand: Brand;
  last4: string;
  exp_month: number;
  exp_year: number;
}

export interface ObolErrorInfo extends FieldError {
  /** validation_error: a field is wrong (nothing was sent); api_error: the vault refused; invalid_request: misuse of the API. */
  type: 'validation_error' | 'api_error' | 'invalid_request';
}

export type TokenResult =
  | { token: string; card: TokenCard; error?: undefined }
  /** A cardCvc element bound to a token: the CVC is attached to it (card on file). */
  | { token: string; cvc_expires_at: string; card?: undefined; error?: undefined }
  | { error: ObolErrorInfo; token?: undefined };

export interface ObolOptions {
  /** The vault's origin, e.g. https://vault.example.com (defaults to the script's own origin). */
  vaultUrl?: string;
}

export interface ObolInstance {
  elements(): Elements;
  /** Resolves with a token or an error; never rejects. */
  createToken(element: ObolElement): Promise<TokenResult>;
}

/** Thrown synchronously for misuse (bad key, style or element type). */
export interface ObolError extends Error {
  type: 'invalid_request';
  code: string;
  field: string;
}

export interface ObolConstructor {
  (publishableKey: string, options?: ObolOptions): ObolInstance;
  new (publishableKey: string, options?: ObolOptions): ObolInstance;
  readonly version: string;
}

declare global {
  interface Window {
    Obol: ObolConstructor;
  }
  const Obol: ObolConstructor;
}
