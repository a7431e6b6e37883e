package serve

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// holdDesc is a one-method gRPC service whose handler runs until it is
// released or its context ends.
func holdDesc(started chan<- struct{}, release <-chan struct{}) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Hold",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Hold", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			started <- struct{}{}
			select {
			case <-release:
				return &emptypb.Empty{}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}},
	}
}

// TestShutdownTimeout: Serve waits for a gRPC handler in flight for
// ShutdownTimeout, then cancels it: a gateway sets it to its drain timeout
// so that no payment handler is cancelled before its drain ends (it was a
// fixed 10 s). Cases: a short grace cancels the handler once it passed; a
// long one lets the handler finish with its answer after the shutdown
// began.
func TestShutdownTimeout(t *testing.T) {
	cases := []struct {
		name    string
		grace   time.Duration
		release bool
		want    codes.Code
	}{
		{"grace over: the handler is cancelled", 100 * time.Millisecond, false, codes.Unavailable},
		{"within the grace: the handler answers", time.Minute, true, codes.OK},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			s, err := New(context.Background(), Options{Name: "test", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: tt.grace,
				Logger: slog.New(slog.DiscardHandler), Register: func(g *grpc.Server) { g.RegisterService(holdDesc(started, release), struct{}{}) }})
			require.NoError(t, err)
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx) }()
			conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			defer conn.Close()
			answer := make(chan error, 1)
			go func() {
				answer <- conn.Invoke(context.Background(), "/test.Hold/Hold", &emptypb.Empty{}, &emptypb.Empty{})
			}()
			<-started
			stop() // the shutdown begins with the handler in flight
			if tt.release {
				close(release)
			}
			select {
			case err := <-answer:
				assert.Equal(t, tt.want, status.Code(err), "%v", err)
			case <-time.After(5 * time.Second): // a bound, far below the old fixed 10 s
				require.FailNow(t, "the handler was neither cancelled nor answered: the shutdown grace ignores ShutdownTimeout")
			}
			require.NoError(t, <-served)
		})
	}
}
