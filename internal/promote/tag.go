package promote

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"

	ptypes "github.com/promoter-dev/promoter/internal/types"
)

// writeTag points tag at the root, the last write of a promotion by tag, unless it
// pointed there already (tagDone).
func (d *destination) writeTag(ctx context.Context, tag name.Tag, tagDone bool) error {
	it := d.rootItem(tag, Tag)
	switch {
	case tagDone:
		it.Action = Skip
	case d.dryRun:
	default:
		// Check again just before writing: another promoter may have tagged meanwhile.
		same, err := d.checkTag(ctx, tag)
		if err != nil {
			return err
		}
		if !same {
			if err := d.put(ctx, tag, d.pl.root); err != nil {
				return err
			}
		}
	}
	d.item(it)
	return nil
}

// moveTag points one more tag at the root, which the destination holds by now: one
// manifest write, or none when it points there already. A tag that is not mutable and
// points elsewhere is a types.TagImmutableError.
func (d *destination) moveTag(ctx context.Context, tag name.Tag) error {
	same, err := d.checkTag(ctx, tag)
	if err != nil {
		return fmt.Errorf("moving %s: %w", tag, err)
	}
	it := d.rootItem(tag, Tag)
	switch {
	case same:
		it.Action = Skip
	case d.dryRun:
	default:
		if err := d.put(ctx, tag, d.pl.root); err != nil {
			return fmt.Errorf("moving %s: %w", tag, err)
		}
	}
	d.item(it)
	return nil
}

// rootItem is the item of the root under tag.
func (d *destination) rootItem(tag name.Tag, action Action) Item {
	root := d.pl.root
	return Item{Kind: root.kind, Ref: tag.String(), Digest: root.digest.String(), Size: root.size(), Action: action}
}

// checkTag reports whether tag already points at the source digest, and fails with an
// ptypes.TagImmutableError when it points elsewhere and is not mutable.
func (d *destination) checkTag(ctx context.Context, tag name.Tag) (same bool, err error) {
	want := d.pl.root.digest.String()
	got, ok, err := d.head(ctx, tag)
	if err != nil {
		return false, err
	}
	switch {
	case !ok:
		return false, nil
	case got == want:
		return true, nil
	case slices.Contains(d.target.MutableTags, tag.TagStr()):
		d.p.log.Info("moving mutable tag", "tag", tag.String(), "from", got, "to", want)
		return false, nil
	default:
		return false, &ptypes.TagImmutableError{Ref: tag.String(), Existing: got, Want: want,
			Remedy: "list the tag in the destination's mutableTags to allow it"}
	}
}
