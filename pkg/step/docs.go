package step

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Flags returns the flags of the binary that spec describes, in the order its --help
// lists them: the common flags, then each option bundle's, every one with its
// CHARTREUSE_ environment variable. They are built the way Run builds the app's
// flags and are meant for documentation: parsing them would write into spec's
// option structs.
func Flags(spec Spec) []cli.Flag { return appFlags(&CommonOptions{}, spec) }

// FlagDoc is one flag as the reference documentation shows it.
type FlagDoc struct {
	Name    string   // without the leading --
	Aliases []string // other names, without dashes
	EnvVars []string // CHARTREUSE_<NAME>, plus any the flag names itself
	Type    string   // string, bool, duration, int, list, value
	Default string   // "" when the flag has no default
	Usage   string
}

// FlagDocs describes spec's flags for documentation, in --help order.
func FlagDocs(spec Spec) []FlagDoc {
	var out []FlagDoc
	for _, f := range Flags(spec) {
		d := FlagDoc{Name: f.Names()[0], Aliases: f.Names()[1:]}
		if df, ok := f.(cli.DocGenerationFlag); ok {
			d.EnvVars = df.GetEnvVars()
			d.Usage = df.GetUsage()
		}
		d.Type, d.Default = flagTypeAndDefault(f)
		out = append(out, d)
	}
	return out
}

// flagTypeAndDefault names a flag's value type and renders its default as a user
// would type it (no quotes around strings).
func flagTypeAndDefault(f cli.Flag) (typ, def string) {
	switch f := f.(type) {
	case *cli.StringFlag:
		return "string", f.Value
	case *cli.PathFlag:
		return "path", f.Value
	case *cli.BoolFlag:
		return "bool", fmt.Sprint(f.Value)
	case *cli.DurationFlag:
		return "duration", f.Value.String()
	case *cli.IntFlag:
		return "int", fmt.Sprint(f.Value)
	case *cli.Int64Flag:
		return "int", fmt.Sprint(f.Value)
	case *cli.UintFlag:
		return "int", fmt.Sprint(f.Value)
	case *cli.Float64Flag:
		return "number", fmt.Sprint(f.Value)
	case *cli.StringSliceFlag:
		if f.Value != nil {
			return "list", strings.Join(f.Value.Value(), ",")
		}
		return "list", ""
	case *cli.GenericFlag:
		if f.Value != nil {
			return "value", f.Value.String()
		}
		return "value", ""
	}
	if df, ok := f.(cli.DocGenerationFlag); ok {
		return "value", df.GetDefaultText()
	}
	return "value", ""
}

// Reference renders spec's flags as a Markdown table: flag, environment variable,
// type, default, description. It is what docs/reference/<step>.md is generated from
// (make docs).
func Reference(spec Spec) string {
	var b strings.Builder
	b.WriteString("| flag | environment variable | type | default | description |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, d := range FlagDocs(spec) {
		names := "`--" + d.Name + "`"
		for _, a := range d.Aliases {
			if len(a) == 1 {
				names += ", `-" + a + "`"
			} else {
				names += ", `--" + a + "`"
			}
		}
		env := make([]string, len(d.EnvVars))
		for i, e := range d.EnvVars {
			env[i] = "`" + e + "`"
		}
		def := "—"
		if d.Default != "" {
			def = "`" + d.Default + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", names, strings.Join(env, ", "), d.Type, def, markdownCell(d.Usage))
	}
	return b.String()
}

// markdownCell makes text safe inside a Markdown table cell: no line breaks, no
// column separators, and no <word> that a renderer would take for an HTML tag.
func markdownCell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	r := strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}
