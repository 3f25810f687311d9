package oip

import (
	"fmt"
	"slices"
	"strings"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// ServerMetadata is the answer to GET /v2 and ServerMetadata.
type ServerMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// TensorMetadata describes one input or output; -1 marks a dynamic
// dimension.
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMetadata is the answer to GET /v2/models/{name} and ModelMetadata.
type ModelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
	// Parameters say what part the model plays here: its role (primary,
	// shadow, incompatible) and the version described. The protocol
	// allows extra parameters; clients that do not know them ignore them.
	Parameters map[string]any `json:"parameters,omitempty"`
}

// Describe returns the metadata of a loaded model: the version asked for,
// or with version "" the primary's if the name is the primary, else the
// newest loaded version. Unknown names and versions are ENOTFOUND.
func Describe(models []understudy.ModelInfo, name, version string) (*ModelMetadata, error) {
	chosen, versions, err := lookup(models, name, version)
	if err != nil {
		return nil, err
	}
	md := &ModelMetadata{
		Name:       chosen.Name,
		Versions:   versions,
		Platform:   Platform,
		Inputs:     tensors(chosen.Signature.Inputs),
		Outputs:    tensors(chosen.Signature.Outputs),
		Parameters: map[string]any{"role": string(chosen.Role), "version": chosen.Version},
	}
	return md, nil
}

// Ready reports whether the model answers inference requests under that
// name and version: only the primary does. Unknown names and versions are
// ENOTFOUND, like Describe's.
func Ready(models []understudy.ModelInfo, name, version string) (bool, error) {
	chosen, _, err := lookup(models, name, version)
	if err != nil {
		return false, err
	}
	return chosen.Role == understudy.RolePrimary, nil
}

// lookup finds the model a request names among the loaded ones.
func lookup(models []understudy.ModelInfo, name, version string) (*understudy.ModelInfo, []string, error) {
	var chosen *understudy.ModelInfo
	var versions []string
	var failed string
	for i := range models {
		m := &models[i]
		if m.Name != name {
			continue
		}
		if m.Signature == nil {
			failed = m.Error
			continue
		}
		versions = append(versions, m.Version)
		switch {
		case version != "":
			if m.Version == version {
				chosen = m
			}
		case chosen == nil, m.Role == understudy.RolePrimary,
			chosen.Role != understudy.RolePrimary && m.LoadedAt.After(chosen.LoadedAt):
			chosen = m
		}
	}
	slices.Sort(versions)
	switch {
	case chosen != nil:
		return chosen, versions, nil
	case len(versions) > 0:
		return nil, nil, understudy.Errorf(understudy.ENOTFOUND, "model %q has no version %q; its loaded versions are %s", name, version, strings.Join(versions, ", "))
	case failed != "":
		return nil, nil, understudy.Errorf(understudy.ENOTFOUND, "model %q is not loaded: it failed to load: %s", name, failed)
	}
	return nil, nil, understudy.Errorf(understudy.ENOTFOUND, "no model named %q; the loaded models are %s", name, loadedNames(models))
}

func loadedNames(models []understudy.ModelInfo) string {
	var names []string
	seen := map[string]bool{}
	for _, m := range models {
		if m.Signature != nil && !seen[m.Name] {
			seen[m.Name] = true
			names = append(names, fmt.Sprintf("%q (%s)", m.Name, m.Role))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func tensors(infos []understudy.TensorInfo) []TensorMetadata {
	out := make([]TensorMetadata, len(infos))
	for i, t := range infos {
		shape := t.Dims
		if shape == nil {
			shape = []int64{}
		}
		out[i] = TensorMetadata{Name: t.Name, Datatype: Datatype(t.DType), Shape: shape}
	}
	return out
}
