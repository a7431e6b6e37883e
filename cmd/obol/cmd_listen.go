package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func newListenCmd() *cobra.Command {
	var forward string
	var types []string
	cmd := loadCmd(&cobra.Command{
		Use:   "listen",
		Short: "Receive a dev webhook endpoint's events and forward them to a local URL, printing each",
		Long: `Receive webhooks in obol dev: obol listen registers a webhook endpoint on a
loopback port of its own (plain http to loopback is allowed in obol dev
only), verifies every delivery's signature, prints it and, with
--forward-to, forwards it unchanged (body and webhook-* headers) to your
local server; your server's answer is the delivery's, so a failing server
gets retries. The endpoint's signing secret is printed so that your server
can verify the forwarded requests. The endpoint is deleted on exit.`,
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.EventsClient) error {
		if forward != "" {
			u, err := url.Parse(forward)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--forward-to %q: want an http:// or https:// URL, e.g. http://localhost:3000/hook", forward)
			}
		}
		ec, ctx, closer, err := dialEvents(cmd.Context(), c)
		if err != nil {
			return err
		}
		defer closer()
		return runListen(ctx, cmd.OutOrStdout(), ec, forward, types)
	})
	cmd.Flags().StringVar(&forward, "forward-to", "", "local URL to forward every webhook to, e.g. http://localhost:3000/hook (default: print only)")
	cmd.Flags().StringSliceVar(&types, "events", []string{"*"}, "event types to receive (repeat or comma-separate; * is all)")
	return cmd
}

func runListen(ctx context.Context, out io.Writer, c eventsv1.EventServiceClient, forward string, types []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ep, err := c.CreateWebhookEndpoint(ctx, &eventsv1.CreateWebhookEndpointRequest{Url: "http://" + ln.Addr().String() + "/", Events: types, Description: "obol listen"})
	if err != nil {
		return apierr.From(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := c.DeleteWebhookEndpoint(dctx, &eventsv1.DeleteWebhookEndpointRequest{Id: ep.Id}); err != nil {
			fmt.Fprintf(out, "could not delete the endpoint %s: %v\n", ep.Id, apierr.From(err))
		}
	}()
	target := forward
	if target == "" {
		target = "nowhere (print only)"
	}
	fmt.Fprintf(out, "Ready: endpoint %s (%s) receives %s; forwarding to %s\nSigning secret: %s\n", ep.Id, ep.Url, strings.Join(types, ","), target, ep.Secret)
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		if err := webhook.Verify(ep.Secret, id, ts, sig, body, time.Now(), 5*time.Minute); err != nil {
			fmt.Fprintf(out, "%s refused a request that is not a valid webhook: %v\n", time.Now().Format("15:04:05"), err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var e struct{ Type, ObjectID string }
		var raw map[string]any
		_ = json.Unmarshal(body, &raw)
		e.Type, _ = raw["type"].(string)
		e.ObjectID, _ = raw["object_id"].(string)
		status := http.StatusOK
		result := ""
		if forward != "" {
			status, result = forwardWebhook(r.Context(), client, forward, r.Header, body)
		}
		fmt.Fprintf(out, "%s %s %s %s%s\n", time.Now().Format("15:04:05"), id, e.Type, e.ObjectID, result)
		w.WriteHeader(status)
	})}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// forwardWebhook posts a verified webhook unchanged to the local URL and
// returns the status to answer eventsd with (502 when the local server
// does not answer, so the delivery is retried) and what to print.
func forwardWebhook(ctx context.Context, client *http.Client, to string, h http.Header, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadGateway, " -> invalid --forward-to"
	}
	for _, k := range []string{"Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature"} {
		req.Header.Set(k, h.Get(k))
	}
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return http.StatusBadGateway, " -> timeout"
		}
		return http.StatusBadGateway, " -> not answering"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, fmt.Sprintf(" -> %d", resp.StatusCode)
}
