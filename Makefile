# Targets mirror CI: `make test` is the README's test command.
.PHONY: test unit lint generate generate-check openapi-lint bench fuzz dev build images

test:
	deploy/scripts/test.sh

unit:
	go test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.'); exit 1)
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

generate:
	deploy/scripts/generate.sh

generate-check:
	deploy/scripts/generate.sh --check

openapi-lint:
	deploy/scripts/openapi-lint.sh

bench:
	go run ./cmd/obol-load
	go run ./cmd/obol-load --suite risk
	go run ./cmd/obol-load --suite gateway
	go run ./cmd/obol-load --suite floor
	go test -run='^$$' -bench=. -benchtime=3x ./vault/store/postgres/ ./vault/keys/rewrap/
	go test -run='^$$' -bench=. ./risk/rules/ ./vault/envelope/ ./internal/cardtext/
	go test -run='^$$' -bench=BenchmarkTracing -benchtime=20000x ./internal/serve/

fuzz:
	go test -run='^$$' -fuzz=FuzzParseNumber -fuzztime=30s ./vault/card/
	go test -run='^$$' -fuzz=FuzzParse -fuzztime=30s ./vault/card/
	go test -run='^$$' -fuzz=FuzzCheckJSON -fuzztime=30s ./internal/httpapi/
	go test -run='^$$' -fuzz=FuzzInt64sAsNumbers -fuzztime=30s ./internal/httpapi/
	go test -run='^$$' -fuzz=FuzzParseRoutes -fuzztime=30s ./proxy/forward/
	go test -run='^$$' -fuzz=FuzzJSONSpan -fuzztime=30s ./proxy/forward/
	go test -run='^$$' -fuzz=FuzzFormSpan -fuzztime=30s ./proxy/forward/
	go test -run='^$$' -fuzz=FuzzClientAddress -fuzztime=30s ./internal/authlimit/
	go test -run='^$$' -fuzz=FuzzWrappedVersion -fuzztime=30s ./vault/keys/transit/
	go test -run='^$$' -fuzz=FuzzScrub -fuzztime=30s ./internal/serve/
	go test -run='^$$' -fuzz=FuzzDestination -fuzztime=30s ./proxy/forward/
	go test -run='^$$' -fuzz=FuzzAnswerEncoded -fuzztime=30s ./proxy/forward/
	go test -run='^$$' -fuzz='^FuzzRedact$$' -fuzztime=30s ./proxy/panscan/
	go test -run='^$$' -fuzz=FuzzRedactEncoded -fuzztime=30s ./proxy/panscan/
	go test -run='^$$' -fuzz=FuzzEchoed -fuzztime=30s ./proxy/panscan/
	go test -run='^$$' -fuzz=FuzzLoose -fuzztime=30s ./proxy/panscan/
	go test -run='^$$' -fuzz=FuzzParseReports -fuzztime=30s ./vault/hosted/
	go test -run='^$$' -fuzz=FuzzFrameRequest -fuzztime=30s ./vault/hosted/
	go test -run='^$$' -fuzz=FuzzValidOrigin -fuzztime=30s ./vault/hosted/
	go test -run='^$$' -fuzz=FuzzParseKey -fuzztime=30s ./internal/idemkey/
	go test -run='^$$' -fuzz=FuzzContains -fuzztime=30s ./internal/cardtext/
	go test -run='^$$' -fuzz=FuzzPaymentToken -fuzztime=30s ./ledger/service/
	go test -run='^$$' -fuzz=FuzzScrubDigits -fuzztime=30s ./internal/telemetry/
	go test -run='^$$' -fuzz=FuzzLoad -fuzztime=30s ./internal/cli/
	go test -run='^$$' -fuzz=FuzzCheckURL -fuzztime=30s ./ledger/events/webhook/
	go test -run='^$$' -fuzz=FuzzVerify -fuzztime=30s ./ledger/events/webhook/
	go test -run='^$$' -fuzz=FuzzDecodeCursor -fuzztime=30s ./ledger/events/server/

dev:
	go run ./cmd/obol dev

build:
	go build -o bin/ ./cmd/...

# Container images (deploy/images/README.md): static binaries on scratch,
# obolpay/<daemon>:<version> and :dev. Needs a running Docker engine.
images:
	deploy/images/build.sh
