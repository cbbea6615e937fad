package gitback

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keygate/keygate/internal/yamledit"
)

const clients = `# Clients.
clients:
  # The browser app.
  web-app:
    profile: token
    redirect-uris: [https://app.example.com/cb]   # production
    grant-types: [authorization_code]
`

// bareRepo makes a bare repository whose main branch holds config.d.
func bareRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bare, err := git.PlainInit(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName("main"))); err != nil {
		t.Fatal(err)
	}
	seed, err := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")})
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := seed.Worktree()
	for name, body := range map[string]string{"config.d/40-clients.yaml": clients, "config.d/00-service.yaml": "schema: 1\n", "README.md": "# config\n"} {
		f, err := wt.Filesystem.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(body))
		f.Close()
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "Seed", Email: "seed@example.com", When: time.Now()}
	if _, err := wt.Commit("seed", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{"file://" + dir}}); err != nil {
		t.Fatal(err)
	}
	if err := seed.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestProposePushesABranchWithOnlyTheEdit(t *testing.T) {
	dir := bareRepo(t)
	w, err := New(Config{URL: "file://" + dir, CompareURL: "https://git.example.com/iam/compare/{base}...{branch}"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := w.Propose(context.Background(), Author{Name: "Ada Lovelace", Email: "ada@example.com"}, "web-app: add a redirect URI", "",
		func(files map[string][]byte) (map[string][]byte, error) {
			d, err := yamledit.Parse(files["40-clients.yaml"])
			if err != nil {
				return nil, err
			}
			if err := d.Append([]string{"clients", "web-app", "redirect-uris"}, "https://staging.example.com/cb"); err != nil {
				return nil, err
			}
			return map[string][]byte{"40-clients.yaml": d.Bytes()}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Branch, "keygate/ada-lovelace-") || p.CompareURL != "https://git.example.com/iam/compare/main..."+strings.ReplaceAll(p.Branch, "/", "%2F") {
		t.Errorf("proposal %+v", p)
	}
	bare, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := bare.Reference(plumbing.NewBranchReferenceName(p.Branch), true)
	if err != nil {
		t.Fatalf("branch %s not pushed: %v", p.Branch, err)
	}
	commit, err := bare.CommitObject(ref.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if commit.Author.Name != "Ada Lovelace" || commit.Author.Email != "ada@example.com" || commit.Message != "web-app: add a redirect URI" {
		t.Errorf("commit %+v", commit.Author)
	}
	parent, err := commit.Parent(0)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := parent.Patch(commit)
	if err != nil {
		t.Fatal(err)
	}
	var minus, plus []string
	for _, line := range strings.Split(patch.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "---"), strings.HasPrefix(line, "+++"):
		case strings.HasPrefix(line, "-"):
			minus = append(minus, line)
		case strings.HasPrefix(line, "+"):
			plus = append(plus, line)
		}
	}
	if len(minus) != 1 || len(plus) != 1 || plus[0] != "+    redirect-uris: [https://app.example.com/cb, https://staging.example.com/cb]   # production" {
		t.Errorf("the commit's diff:\n%s", patch)
	}
	// main is untouched.
	main, _ := bare.Reference(plumbing.NewBranchReferenceName("main"), true)
	if main.Hash() != parent.Hash {
		t.Error("main moved")
	}
	head, err := w.ReadHead(context.Background())
	if err != nil || head.Commit != parent.Hash.String() || string(head.Files["40-clients.yaml"]) != clients || len(head.Files) != 2 {
		t.Errorf("head %v %v", head, err)
	}
}

func TestProposeRefusesNoOpAndBadRemotes(t *testing.T) {
	dir := bareRepo(t)
	w, _ := New(Config{URL: "file://" + dir})
	_, err := w.Propose(context.Background(), Author{Name: "A", Email: "a@example.com"}, "nothing", "", func(files map[string][]byte) (map[string][]byte, error) {
		return map[string][]byte{"40-clients.yaml": files["40-clients.yaml"]}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "leaves every file as it was") {
		t.Errorf("no-op: %v", err)
	}
	if _, err := New(Config{URL: "ftp://x/y"}); err == nil {
		t.Error("ftp accepted")
	}
	missing, _ := New(Config{URL: "file://" + t.TempDir() + "/nope.git"})
	if _, err := missing.ReadHead(context.Background()); err == nil {
		t.Error("a missing repository read")
	}
	other, _ := New(Config{URL: "file://" + dir, Base: "develop"})
	if _, err := other.ReadHead(context.Background()); err == nil || !strings.Contains(err.Error(), "develop") {
		t.Errorf("a missing branch: %v", err)
	}
}
