// Package kubernetes holds Obol's Kubernetes manifests (a kustomize base and
// the dev and production overlays) and their tests: both overlays build,
// every object decodes strictly into the k8s.io/api types, every Deployment
// is hardened, and the connectivity the NetworkPolicies allow, computed with
// the cyclonus policy analyser, matches the PCI reachability matrix. See
// README.md.
//
// It is a module of its own (the Kubernetes libraries stay out of Obol's
// go.mod): run its tests from this directory with go test ./...
package kubernetes
