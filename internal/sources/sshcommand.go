package sources

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// readSSHSetup is the daemon's ssh setup as OpenSSH's ssh would make it from the environment
// (getenv) and the home directory home ("": none): its defaults, changed by
// GIT_SSH_COMMAND, which git ran through sh with the host and command appended, or by
// GIT_SSH, a program git ran with them. Only ssh itself can be honoured, with the options
// that bear on listing a branch:
//
//   - -i FILE, -o IdentityFile=FILE: the keys to offer, instead of the default ones;
//   - -o IdentitiesOnly=yes: no keys from the ssh agent (SSH_AUTH_SOCK);
//   - -o IdentityAgent=SOCKET|none: the agent's socket;
//   - -o UserKnownHostsFile=FILES, -o GlobalKnownHostsFile=FILES: the known hosts;
//   - -o StrictHostKeyChecking=yes|ask|accept-new|no|off;
//   - -l USER, -o User=USER: the user when the URL names none;
//   - -F /dev/null (or none): no ssh config file (see the README on ~/.ssh/config);
//   - options that do not change what a listing reaches or trusts, which are ignored:
//     -4 -6 -a -A -C -k -n -q -t -T -v -x, -E FILE, BatchMode, LogLevel, ConnectTimeout
//     (the poll's timeout bounds it), and the like (ignoredSSHOptions).
//
// Anything else (another program, -p, ProxyCommand, a config file, sh syntax beyond quotes
// and $VAR) is an error: the daemon would otherwise reach or trust servers in another way
// than the operator set up.
func readSSHSetup(getenv func(string) string, home string) (*sshSetup, error) {
	dotSSH := filepath.Join(home, ".ssh")
	s := &sshSetup{sshSettings: sshSettings{
		strict: strictYes,
		agent:  getenv("SSH_AUTH_SOCK"),
	}}
	var words []string
	switch command, program := getenv("GIT_SSH_COMMAND"), getenv("GIT_SSH"); {
	case command != "":
		var err error
		if words, err = shellWords(command, getenv); err != nil {
			return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: %w", err)
		}
		if len(words) == 0 {
			break
		}
		if path.Base(filepath.ToSlash(words[0])) != "ssh" {
			return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND runs %s: source.poll lists branches in Go and can honour ssh's options only (ssh -i KEY -o UserKnownHostsFile=FILE …)", words[0])
		}
		words = words[1:]
	case program != "":
		if path.Base(filepath.ToSlash(program)) != "ssh" {
			return nil, fmt.Errorf("the daemon's GIT_SSH is %s: source.poll lists branches in Go and runs no program; use GIT_SSH_COMMAND with ssh's options, or ~/.ssh", program)
		}
	}
	seen := map[string]bool{} // options set, as ssh keeps the first value of most
	var identities []string
	identitiesSet := false
	for i := 0; i < len(words); i++ {
		arg := words[i]
		if len(arg) < 2 || arg[0] != '-' || arg == "--" {
			return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND has %q where ssh takes options: git appends the host and the command", arg)
		}
	flags:
		for j := 1; j < len(arg); j++ {
			flag := arg[j]
			if strings.IndexByte("46aACknqtTvx", flag) >= 0 {
				continue
			}
			value := arg[j+1:]
			if value == "" {
				if i+1 == len(words) {
					return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND ends with -%c, which takes a value", flag)
				}
				i++
				value = words[i]
			}
			switch flag {
			case 'i':
				identities, identitiesSet = append(identities, expandHome(value, home)), true
			case 'l':
				setOnce(seen, "user", &s.user, value)
			case 'o':
				key, val := splitSSHOption(value)
				if err := s.option(key, val, home, seen, &identities, &identitiesSet); err != nil {
					return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: -o %s: %w", value, err)
				}
			case 'F':
				if value != "/dev/null" && value != "none" {
					return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: -F %s: source.poll reads no ssh config file: put its settings in GIT_SSH_COMMAND, or use -F /dev/null", value)
				}
			case 'E':
			case 'p':
				return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: -p %s: name the port in source.repo instead (ssh://git@host:%s/org/repo.git)", value, value)
			default:
				return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: source.poll cannot honour ssh's -%c", flag)
			}
			break flags
		}
	}
	// Without a home directory, there is no ~/.ssh to read.
	if identitiesSet {
		s.identities = identities
	} else if home != "" {
		for _, name := range []string{"id_rsa", "id_ecdsa", "id_ed25519"} {
			s.identities = append(s.identities, filepath.Join(dotSSH, name))
		}
	}
	if !seen["userknownhostsfile"] && home != "" {
		s.userKnownHosts = []string{filepath.Join(dotSSH, "known_hosts"), filepath.Join(dotSSH, "known_hosts2")}
	}
	if !seen["globalknownhostsfile"] {
		s.globalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	return s, nil
}

// ignoredSSHOptions are the ssh options (lower case) that do not change which server a
// listing reaches, how it is trusted or which key logs in, so a poll may ignore them.
var ignoredSSHOptions = map[string]bool{
	"addkeystoagent": true, "batchmode": true, "challengeresponseauthentication": true,
	"checkhostip": true, "clearallforwardings": true, "compression": true, "connectionattempts": true,
	"connecttimeout": true, "controlmaster": true, "controlpath": true, "controlpersist": true,
	"exitonforwardfailure": true, "forwardagent": true, "forwardx11": true, "forwardx11trusted": true,
	"hashknownhosts": true, "kbdinteractiveauthentication": true, "loglevel": true,
	"numberofpasswordprompts": true, "passwordauthentication": true, "requesttty": true,
	"sendenv": true, "serveraliveinterval": true, "serveralivecountmax": true, "tcpkeepalive": true,
	"updatehostkeys": true, "visualhostkey": true,
}

// option applies ssh option key (any case) with value to s.
func (s *sshSettings) option(key, value, home string, seen map[string]bool, identities *[]string, identitiesSet *bool) error {
	k := strings.ToLower(key)
	switch k {
	case "identityfile":
		*identitiesSet = true
		if value != "none" {
			*identities = append(*identities, expandHome(value, home))
		}
	case "identitiesonly":
		if seen[k] {
			return nil
		}
		seen[k] = true
		switch strings.ToLower(value) {
		case "yes":
			s.identitiesOnly = true
		case "no":
		default:
			return fmt.Errorf("IdentitiesOnly is yes or no, not %q", value)
		}
	case "identityagent":
		if seen[k] {
			return nil
		}
		seen[k] = true
		switch value {
		case "none":
			s.agent = ""
		case "SSH_AUTH_SOCK":
		default:
			s.agent = expandHome(value, home)
		}
	case "userknownhostsfile", "globalknownhostsfile":
		if seen[k] {
			return nil
		}
		seen[k] = true
		var files []string
		if value != "none" {
			for _, f := range strings.Fields(value) {
				files = append(files, expandHome(f, home))
			}
		}
		if k == "userknownhostsfile" {
			s.userKnownHosts = files
		} else {
			s.globalKnownHosts = files
		}
	case "stricthostkeychecking":
		if seen[k] {
			return nil
		}
		seen[k] = true
		switch strings.ToLower(value) {
		case "yes", "ask":
			s.strict = strictYes
		case "accept-new":
			s.strict = strictAcceptNew
		case "no", "off":
			s.strict = strictNo
		default:
			return fmt.Errorf("StrictHostKeyChecking is yes, ask, accept-new, no or off, not %q", value)
		}
	case "user":
		setOnce(seen, k, &s.user, value)
	case "pubkeyauthentication":
		if strings.ToLower(value) != "yes" {
			return errors.New("a poll logs in with a public key only")
		}
	case "port":
		return fmt.Errorf("name the port in source.repo instead (ssh://git@host:%s/org/repo.git)", value)
	default:
		if !ignoredSSHOptions[k] {
			return fmt.Errorf("source.poll cannot honour ssh's %s", key)
		}
	}
	return nil
}

// setOnce sets *dst to value unless key was set before: ssh keeps an option's first value.
func setOnce(seen map[string]bool, key string, dst *string, value string) {
	if !seen[key] {
		seen[key] = true
		*dst = value
	}
}

// splitSSHOption splits an -o argument as ssh does: "Key=Value", "Key Value", "Key = Value".
func splitSSHOption(s string) (key, value string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "= \t")
	if i < 0 {
		return s, ""
	}
	key, value = s[:i], strings.TrimLeft(s[i:], " \t")
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	return key, strings.Trim(value, `"`)
}

// expandHome is file with a leading ~/ (or ~ alone) replaced by home, as ssh expands its
// file options; without a home, file.
func expandHome(file, home string) string {
	if home == "" {
		return file
	}
	if file == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(file, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return file
}

// shellWords splits s into words as sh would for a simple command: blanks separate words,
// '…' and "…" quote, \ escapes, and $NAME and ${NAME} expand to getenv's value (without
// splitting it further), as does a ~ that starts a word. Other sh syntax (pipes, lists,
// redirections, command substitution, globs, comments) is an error: s is not run.
func shellWords(s string, getenv func(string) string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	expand := func(i int) (int, error) { // s[i] == '$'
		rest := s[i+1:]
		var name string
		switch {
		case strings.HasPrefix(rest, "{"):
			j := strings.IndexByte(rest, '}')
			if j < 0 {
				return 0, errors.New("an unclosed ${")
			}
			name, i = rest[1:j], i+1+j+1
		default:
			j := 0
			for j < len(rest) && (rest[j] == '_' || rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z' || j > 0 && rest[j] >= '0' && rest[j] <= '9') {
				j++
			}
			name, i = rest[:j], i+1+j
		}
		if !validEnvName(name) {
			return 0, fmt.Errorf("$ that is not $NAME or ${NAME} in %q", s)
		}
		w.WriteString(getenv(name))
		return i, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			end()
			i++
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("an unclosed '")
			}
			w.WriteString(s[i+1 : i+1+j])
			inWord, i = true, i+1+j+1
		case c == '"':
			inWord = true
			i++
			for {
				if i == len(s) {
					return nil, errors.New(`an unclosed "`)
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				switch {
				case c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0:
					if s[i+1] != '\n' {
						w.WriteByte(s[i+1])
					}
					i += 2
				case c == '$':
					var err error
					if i, err = expand(i); err != nil {
						return nil, err
					}
				case c == '`':
					return nil, fmt.Errorf("command substitution in %q", s)
				default:
					w.WriteByte(c)
					i++
				}
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New(`a trailing \`)
			}
			if s[i+1] != '\n' {
				w.WriteByte(s[i+1])
				inWord = true
			}
			i += 2
		case c == '$': // unquoted and empty, it makes no word
			before := w.Len()
			var err error
			if i, err = expand(i); err != nil {
				return nil, err
			}
			inWord = inWord || w.Len() > before
		case c == '~' && !inWord && (i+1 == len(s) || strings.IndexByte("/ \t\n", s[i+1]) >= 0):
			w.WriteString(getenv("HOME"))
			inWord = true
			i++
		case c == '#' && !inWord, strings.IndexByte("|&;<>()`*?[", c) >= 0:
			return nil, fmt.Errorf("sh syntax %q in %q: it is not run by a shell", c, s)
		default:
			w.WriteByte(c)
			inWord = true
			i++
		}
	}
	end()
	return words, nil
}

// validEnvName is an sh variable name.
func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, r := range name {
		if r != '_' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
