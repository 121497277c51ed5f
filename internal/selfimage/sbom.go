package selfimage

import (
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// SBOMMediaType is the SPDX JSON media type: the artifactType of the SBOM referrer and the
// media type of its one layer.
const SBOMMediaType = "application/spdx+json"

// spdxDocument is the subset of SPDX 2.3 (JSON) the SBOM uses.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID                string            `json:"SPDXID"`
	Name                  string            `json:"name"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// sbomSubject is what the SBOM describes: the binary's build info and where it came from.
type sbomSubject struct {
	info     *debug.BuildInfo
	platform string // os/arch[/variant]
	version  string // the version stamped into the binary
	revision string // the commit, as `promoter version` prints it
	source   string // the source repository URL
	created  time.Time
}

// spdxID keeps the characters an SPDX identifier allows (letters, digits, '.', '-').
var spdxIDInvalid = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// spdx renders the SBOM of the binary's Go modules: the main module, every dependency
// (replacements resolved) and the standard library of the toolchain, as SPDX 2.3 JSON.
// The same subject gives the same bytes.
func spdx(s sbomSubject) ([]byte, error) {
	if s.info == nil {
		return nil, fmt.Errorf("no build info")
	}
	main := spdxPackage{
		SPDXID:                "SPDXRef-Package-main",
		Name:                  s.info.Main.Path,
		VersionInfo:           s.version,
		DownloadLocation:      "NOASSERTION",
		PrimaryPackagePurpose: "APPLICATION",
		ExternalRefs:          []spdxExternalRef{purl(s.info.Main.Path, s.version)},
	}
	if s.source != "" {
		main.DownloadLocation = "git+" + s.source
		if s.revision != "" {
			main.DownloadLocation += "@" + strings.TrimSuffix(s.revision, "-dirty")
		}
	}
	if s.revision != "" {
		main.SourceInfo = fmt.Sprintf("built for %s from commit %s with %s", s.platform, s.revision, s.info.GoVersion)
	}
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        fmt.Sprintf("%s %s %s", s.info.Main.Path, s.version, s.platform),
		DocumentNamespace: fmt.Sprintf("https://%s/spdx/%s/%s", s.info.Main.Path,
			orNone(s.revision), strings.ReplaceAll(s.platform, "/", "-")),
		CreationInfo: spdxCreationInfo{
			Created:  s.created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: promoter-selfimage", "Organization: promoter-dev"},
		},
		Packages: []spdxPackage{main},
		Relationships: []spdxRelationship{
			{Element: "SPDXRef-DOCUMENT", Type: "DESCRIBES", Related: main.SPDXID},
		},
	}
	add := func(i int, path, version string) {
		id := fmt.Sprintf("SPDXRef-Package-%d-%s", i, strings.Trim(spdxIDInvalid.ReplaceAllString(path, "-"), "-"))
		doc.Packages = append(doc.Packages, spdxPackage{
			SPDXID:                id,
			Name:                  path,
			VersionInfo:           version,
			DownloadLocation:      "NOASSERTION",
			PrimaryPackagePurpose: "LIBRARY",
			ExternalRefs:          []spdxExternalRef{purl(path, version)},
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{Element: main.SPDXID, Type: "DEPENDS_ON", Related: id})
	}
	add(0, "stdlib", s.info.GoVersion)
	for i, m := range s.info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		add(i+1, m.Path, m.Version)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// purl is the package URL of a Go module (pkg:golang/PATH@VERSION).
func purl(path, version string) spdxExternalRef {
	loc := "pkg:golang/" + path
	if version != "" && version != "(devel)" {
		loc += "@" + strings.ReplaceAll(version, "+", "%2B") // v3.5.1+incompatible
	}
	return spdxExternalRef{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: loc}
}

func orNone(s string) string {
	if s == "" {
		return "NOASSERTION"
	}
	return s
}
