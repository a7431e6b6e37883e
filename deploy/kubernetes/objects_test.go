package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the kustomizations a platform team applies.
var overlays = []string{"overlays/dev", "overlays/production"}

// objects is one built overlay, decoded into the real API types.
type objects struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	services        []*corev1.Service
	secrets         []*corev1.Secret
	deployments     []*appsv1.Deployment
	pdbs            []*policyv1.PodDisruptionBudget
	policies        []*networkingv1.NetworkPolicy
}

// typeMeta is what selects the Go type of a manifest.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// decodeStrict decodes one object into the k8s.io/api type its apiVersion
// and kind name, refusing unknown and duplicate fields, and adds it to o.
func (o *objects) decodeStrict(doc []byte) error {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var target any
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		v := &corev1.Namespace{}
		o.namespaces, target = append(o.namespaces, v), v
	case "v1/ServiceAccount":
		v := &corev1.ServiceAccount{}
		o.serviceAccounts, target = append(o.serviceAccounts, v), v
	case "v1/Service":
		v := &corev1.Service{}
		o.services, target = append(o.services, v), v
	case "v1/Secret":
		v := &corev1.Secret{}
		o.secrets, target = append(o.secrets, v), v
	case "apps/v1/Deployment":
		v := &appsv1.Deployment{}
		o.deployments, target = append(o.deployments, v), v
	case "policy/v1/PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		o.pdbs, target = append(o.pdbs, v), v
	case "networking.k8s.io/v1/NetworkPolicy":
		v := &networkingv1.NetworkPolicy{}
		o.policies, target = append(o.policies, v), v
	default:
		return fmt.Errorf("apiVersion %q kind %q: not a type these manifests use", tm.APIVersion, tm.Kind)
	}
	return unmarshalStrict(doc, target)
}

// unmarshalStrict decodes YAML the way the API server's strict field
// validation does: duplicate keys, unknown fields and fields in the wrong
// case (encoding/json would take ipblock for ipBlock) are errors.
func unmarshalStrict(doc []byte, target any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, target, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// build runs kustomize in process on dir (relative to this package).
func build(t *testing.T, dir string) *objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", dir)
	o := &objects{}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		require.NoError(t, err)
		require.NoError(t, o.decodeStrict(doc), "%s: %s %s/%s", dir, r.GetKind(), r.GetNamespace(), r.GetName())
	}
	return o
}

// documents splits a YAML stream into its documents (empty ones dropped).
func documents(r io.Reader) ([][]byte, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// jsonPatchOp is one RFC 6902 operation of a patch file.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
	From  string `json:"from,omitempty"`
}

// decodeFile decodes every document of a manifest, kustomization or patch
// file strictly: a kustomization into kustomize's type, an RFC 6902 patch
// into operations, anything else into its k8s.io/api type.
func decodeFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	docs, err := documents(f)
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		return errors.New("no document")
	}
	o := &objects{}
	for i, doc := range docs {
		switch {
		case filepath.Base(path) == "kustomization.yaml":
			var k kusttypes.Kustomization
			err = unmarshalStrict(doc, &k)
		case strings.HasPrefix(strings.TrimSpace(string(stripComments(doc))), "- op:"):
			var ops []jsonPatchOp
			if err = unmarshalStrict(doc, &ops); err == nil {
				for _, op := range ops {
					if op.Op == "" || !strings.HasPrefix(op.Path, "/") {
						err = fmt.Errorf("patch operation %+v: op and an absolute path are required", op)
					}
				}
			}
		default:
			err = o.decodeStrict(doc)
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
	}
	return nil
}

// manifestFiles lists every YAML file under base/ and overlays/.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, root := range []string{"base", "overlays"} {
		require.NoError(t, filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return err
		}))
	}
	require.NotEmpty(t, files)
	return files
}

func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	return s.Matches(k8slabels.Set(labels))
}
