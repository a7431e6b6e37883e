package hosted

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/internal/httpapi"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
)

// maxFrameBody bounds a frame's request body.
const maxFrameBody = 8 << 10

type frameCard struct {
	Number   string `json:"number"`
	ExpMonth int32  `json:"exp_month"`
	ExpYear  int32  `json:"exp_year"`
	CVC      string `json:"cvc"`
}

type tokenizeBody struct {
	Origin string     `json:"origin"`
	Card   *frameCard `json:"card"`
}

// frameAnswer is all a frame (and so the page) learns: token and PAN-free
// card metadata.
type frameAnswer struct {
	Token string        `json:"token"`
	Card  frameCardMeta `json:"card"`
}

type frameCardMeta struct {
	Brand    string `json:"brand"`
	Last4    string `json:"last4"`
	ExpMonth int32  `json:"exp_month"`
	ExpYear  int32  `json:"exp_year"`
}

func answer(t *vaultv1.Token) frameAnswer {
	c := t.GetCard()
	return frameAnswer{Token: t.GetToken(), Card: frameCardMeta{Brand: c.GetBrand(), Last4: c.GetLast4(), ExpMonth: c.GetExpMonth(), ExpYear: c.GetExpYear()}}
}

// frameRequest checks that a request comes from the vault's own frame with
// a publishable key and decodes its JSON body strictly into v. It returns
// the Authorization value.
func frameRequest(w http.ResponseWriter, r *http.Request, v any) (string, *apierr.Error) {
	if !sameOrigin(r) {
		return "", ErrCrossOrigin
	}
	auth := r.Header.Get("Authorization")
	key, err := apikey.FromBearer(auth)
	if err != nil {
		return "", apierr.ErrUnauthenticated
	}
	if apikey.KindOf(key) != apikey.Publishable {
		return "", ErrSecretKeyInBrowser
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return "", ErrMalformed
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFrameBody))
	dec.DisallowUnknownFields()
	// The decoder's own message may quote the input: never returned.
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", apierr.New(apierr.KindTooLarge, apierr.CodeBodyTooLarge, "body", "request body is too large")
		}
		return "", ErrMalformed
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", ErrMalformed
	}
	return auth, nil
}

// tokens is the frames' tokenize: the vault service authenticates the
// publishable key and checks the page origin against the merchant's list.
// A publishable key creates a fresh token; it never deduplicates.
func (h *Handler) tokens(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("version") != Version {
		http.NotFound(w, r)
		return
	}
	var body tokenizeBody
	auth, e := frameRequest(w, r, &body)
	if e != nil {
		httpapi.WriteError(w, e)
		return
	}
	if body.Origin == "" {
		httpapi.WriteError(w, ErrOriginRequired)
		return
	}
	if body.Card == nil {
		httpapi.WriteError(w, apierr.Invalid(apierr.CodeFieldRequired, "card", "card is required"))
		return
	}
	ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", auth, "origin", body.Origin))
	c := body.Card
	tok, err := h.o.Vault.Tokenize(ctx, &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: c.Number, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, Cvc: c.CVC}})
	body.Card = nil
	if err != nil {
		httpapi.WriteError(w, apierr.From(err))
		return
	}
	writeJSON(w, answer(tok))
}

type cvcBody struct {
	Origin       string `json:"origin"`
	Token        string `json:"token"`
	ClientSecret string `json:"client_secret"`
	CVC          string `json:"cvc"`
}

// cvc attaches a freshly typed CVC to an existing token (card on file),
// authorised by the single-use client secret the merchant's backend minted
// with its secret key for that token.
func (h *Handler) cvc(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("version") != Version {
		http.NotFound(w, r)
		return
	}
	var body cvcBody
	auth, e := frameRequest(w, r, &body)
	if e != nil {
		httpapi.WriteError(w, e)
		return
	}
	switch {
	case body.Origin == "":
		httpapi.WriteError(w, ErrOriginRequired)
		return
	case body.Token == "":
		httpapi.WriteError(w, apierr.Invalid(apierr.CodeFieldRequired, "token", "token is required"))
		return
	case body.ClientSecret == "":
		httpapi.WriteError(w, apierr.Invalid(apierr.CodeFieldRequired, "client_secret", "client_secret is required"))
		return
	}
	ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", auth, "origin", body.Origin))
	tok, err := h.o.Vault.AttachCVC(ctx, &vaultv1.AttachCVCRequest{Token: body.Token, Cvc: body.CVC, ClientSecret: body.ClientSecret})
	body.CVC, body.ClientSecret = "", ""
	if err != nil {
		httpapi.WriteError(w, apierr.From(err))
		return
	}
	out := cvcAnswer{Token: tok.GetToken()}
	if e := tok.GetCvcExpiresAt(); e != nil {
		out.CVCExpiresAt = e.AsTime().UTC().Format(time.RFC3339)
	}
	writeJSON(w, out)
}

// cvcAnswer is what a CVC re-collection tells the frame and page.
type cvcAnswer struct {
	Token        string `json:"token"`
	CVCExpiresAt string `json:"cvc_expires_at,omitempty"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
