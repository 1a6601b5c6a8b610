package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/registry"
)

// imds knows of an image only its imds-support, which decides the metadata
// options of instances registered with it afterwards (see registry.Resolve).
//
// RegisterImage creates the image record: as on EC2 the caller gives a Name
// and gets an id back; here the id is derived from the name
// (ami- and 17 hex digits of SHA-256("image/"+Name)), so that scripts can
// repeat it, and a second registration of a name is refused as EC2 refuses
// a duplicate name. An image that instances already use (their ami-id) is
// known without registering it: ModifyImageAttribute and
// DescribeImageAttribute accept its id.

// ImageIDForName is the id RegisterImage gives an image called name.
func ImageIDForName(name string) string {
	s := sha256.Sum256([]byte("image/" + name))
	return "ami-" + hex.EncodeToString(s[:])[:17]
}

type registerImageResponse struct {
	XMLName xml.Name `xml:"RegisterImageResponse"`
	ec2Head
	ImageID string `xml:"imageId"`
}

func (h *Handler) registerImage(ctx context.Context, c *ec2Call) (ec2Response, error) {
	name, err := c.required("Name")
	if err != nil {
		return nil, err
	}
	if len(name) < 3 || len(name) > 128 {
		return nil, &ec2Error{http.StatusBadRequest, "InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long"}
	}
	support, err := option(c, "ImdsSupport", imdsopt.ImdsSupport.Validate)
	if err != nil {
		return nil, err
	}
	img := registry.Image{ImageID: ImageIDForName(name)}
	if support != nil {
		img.ImdsSupport = *support
	}
	_, err = h.o.Registry.Image(ctx, img.ImageID)
	var nf *registry.NotFoundError
	switch {
	case err == nil:
		return nil, &ec2Error{http.StatusBadRequest, "InvalidAMIName.Duplicate", fmt.Sprintf("AMI name %s is already in use by AMI %s", name, img.ImageID)}
	case !errors.As(err, &nf):
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	if err := h.o.Registry.PutImage(ctx, img); err != nil {
		return nil, err
	}
	h.audit(c, "image", img.ImageID, "name", name, "imds_support", img.ImdsSupport)
	return &registerImageResponse{ImageID: img.ImageID}, nil
}

// image returns what is known of an image: its record, or an empty one for
// an image that some instance uses.
func (h *Handler) image(ctx context.Context, id string) (registry.Image, error) {
	if err := checkImageID(id); err != nil {
		return registry.Image{}, err
	}
	img, err := h.o.Registry.Image(ctx, id)
	var nf *registry.NotFoundError
	if !errors.As(err, &nf) {
		return img, err
	}
	ins, err := h.o.Registry.Instances(ctx)
	if err != nil {
		return registry.Image{}, err
	}
	if slices.ContainsFunc(ins, func(in *registry.Instance) bool { return describeView(in).AMIID == id }) {
		return registry.Image{ImageID: id}, nil
	}
	return registry.Image{}, errImageNotFound(id)
}

func (h *Handler) modifyImageAttribute(ctx context.Context, c *ec2Call) (ec2Response, error) {
	id, err := c.required("ImageId")
	if err != nil {
		return nil, err
	}
	// The AWS CLI sends ImdsSupport.Value; the generic form is
	// Attribute=imdsSupport&Value=v2.0.
	value, ok := c.str("ImdsSupport.Value")
	if attr, given := c.str("Attribute"); given {
		if *attr != "imdsSupport" {
			return nil, errInvalid("Value (%s) for parameter Attribute is invalid: imds records only the imdsSupport attribute", *attr)
		}
		if value, ok = c.str("Value"); !ok {
			return nil, errMissing("Value")
		}
	}
	for k := range c.form {
		if k != "Action" && k != "Version" && k != "ImageId" && k != "DryRun" && k != "ImdsSupport.Value" && k != "Attribute" && k != "Value" {
			return nil, errInvalid("The parameter %s is not supported: imds records only the imdsSupport attribute", k)
		}
	}
	if !ok {
		return nil, errMissing("ImdsSupport.Value")
	}
	if err := imdsopt.ImdsSupport(*value).Validate(); err != nil {
		return nil, errOptionValue("ImdsSupport", *value, err)
	}
	img, err := h.image(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	img.ImdsSupport = imdsopt.ImdsSupport(*value)
	if err := h.o.Registry.PutImage(ctx, img); err != nil {
		return nil, err
	}
	h.audit(c, "image", id, "imds_support", img.ImdsSupport)
	return returnTrue(c.action), nil
}

type attributeValueXML struct {
	Value string `xml:"value,omitempty"`
}

type describeImageAttributeResponse struct {
	XMLName xml.Name `xml:"DescribeImageAttributeResponse"`
	ec2Head
	ImageID     string            `xml:"imageId"`
	ImdsSupport attributeValueXML `xml:"imdsSupport"`
}

func (h *Handler) describeImageAttribute(ctx context.Context, c *ec2Call) (ec2Response, error) {
	id, err := c.required("ImageId")
	if err != nil {
		return nil, err
	}
	attr, err := c.required("Attribute")
	if err != nil {
		return nil, err
	}
	if attr != "imdsSupport" {
		return nil, errInvalid("Value (%s) for parameter Attribute is invalid: imds records only the imdsSupport attribute", attr)
	}
	img, err := h.image(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	return &describeImageAttributeResponse{ImageID: id, ImdsSupport: attributeValueXML{string(img.ImdsSupport)}}, nil
}
