package central

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/conclave-lb/conclave/fsm"
)

// Recordings made before Conclave (on a BBB server used directly, or
// behind Scalelite) are in no index: the nodes' listings name meetings no
// frontend owns. `conclavectl import recordings --frontend KEY` ships them
// with an admin token; the index entry is then made from the recording's
// own metadata.xml, as Scalelite's importer does, and the frontend named
// owns it. A format the entry does not list yet is added to it.

// maxMetadata bounds the metadata.xml read (BBB's are a few KiB).
const maxMetadata = 1 << 20

// bbbMetadata is what an entry needs of BBB's metadata.xml.
type bbbMetadata struct {
	ID           string `xml:"id"`
	State        string `xml:"state"`
	Published    string `xml:"published"`
	StartTime    int64  `xml:"start_time"`
	EndTime      int64  `xml:"end_time"`
	Participants int    `xml:"participants"`
	RawSize      int64  `xml:"raw_size"`
	Meeting      struct {
		ID         string `xml:"id,attr"`
		ExternalID string `xml:"externalId,attr"`
		Name       string `xml:"name,attr"`
		Breakout   string `xml:"breakout,attr"`
	} `xml:"meeting"`
	Meta struct {
		Items []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"meta"`
	Playback struct {
		Format         string `xml:"format"`
		Link           string `xml:"link"`
		ProcessingTime int64  `xml:"processing_time"`
		Duration       int64  `xml:"duration"` // ms
		Size           int64  `xml:"size"`
	} `xml:"playback"`
}

// readMetadata reads a central copy's metadata.xml.
func (c *Central) readMetadata(ctx context.Context, format, recordID, version string) (*bbbMetadata, error) {
	r, info, err := c.store.Get(ctx, publishedKey(format, recordID, version, "metadata.xml"), 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if info.Size > maxMetadata {
		return nil, fmt.Errorf("metadata.xml of %d bytes, over %d", info.Size, maxMetadata)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxMetadata))
	if err != nil {
		return nil, err
	}
	var m bbbMetadata
	if err := xml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("metadata.xml: %w", err)
	}
	if m.ID != recordID {
		return nil, errors.New("metadata.xml names another recording")
	}
	return &m, nil
}

func esc(s string) string { return html.EscapeString(s) }

// formatXML is getRecordings' <format> for the metadata's playback.
func (m *bbbMetadata) formatXML(format string) string {
	p := m.Playback
	return "<format><type>" + esc(format) + "</type><url>" + esc(p.Link) + "</url><processingTime>" +
		strconv.FormatInt(p.ProcessingTime, 10) + "</processingTime><length>" + strconv.FormatInt(p.Duration/60000, 10) +
		"</length><size>" + strconv.FormatInt(p.Size, 10) + "</size></format>"
}

// recording is the index entry getRecordings would list for m.
func (m *bbbMetadata) recording(format, frontend, backendID string) fsm.Recording {
	meta := map[string]string{}
	for _, it := range m.Meta.Items {
		if k := it.XMLName.Local; k != "" && len(meta) < fsm.MaxSettingsKeys && len(k) <= fsm.MaxSettingsKeyLen && len(it.Value) <= fsm.MaxSettingsValueLen {
			meta[k] = it.Value
		}
	}
	state := m.State
	if state != "published" && state != "unpublished" {
		state = "published"
	}
	published := state == "published"
	clientID := m.Meeting.ExternalID
	if clientID == "" {
		clientID = m.Meeting.ID
	}
	var b strings.Builder
	b.WriteString("<recording><recordID>" + esc(m.ID) + "</recordID><meetingID>" + esc(clientID) +
		"</meetingID><internalMeetingID>" + esc(m.Meeting.ID) + "</internalMeetingID><name>" + esc(m.Meeting.Name) +
		"</name><isBreakout>" + strconv.FormatBool(m.Meeting.Breakout == "true") + "</isBreakout><published>" +
		strconv.FormatBool(published) + "</published><state>" + state + "</state><startTime>" + strconv.FormatInt(m.StartTime, 10) +
		"</startTime><endTime>" + strconv.FormatInt(m.EndTime, 10) + "</endTime><participants>" + strconv.Itoa(m.Participants) +
		"</participants><rawSize>" + strconv.FormatInt(m.RawSize, 10) + "</rawSize><metadata>")
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("<" + k + ">" + esc(meta[k]) + "</" + k + ">")
	}
	b.WriteString("</metadata><size>" + strconv.FormatInt(m.Playback.Size, 10) + "</size><playback>" + m.formatXML(format) + "</playback></recording>")
	return fsm.Recording{RecordID: m.ID, Frontend: frontend, MeetingID: clientID, InternalID: m.Meeting.ID, BackendID: backendID,
		State: state, StartTime: m.StartTime, Meta: meta, XML: b.String()}
}

// indexImported makes or extends the index entry of an imported
// recording from its central metadata.xml (the offer named a frontend).
func (c *Central) indexImported(ctx context.Context, o *offer) error {
	m, err := c.readMetadata(ctx, o.Format, o.RecordID, o.id)
	if err != nil {
		return err
	}
	rec, ok := c.cluster.FSM().Recording(o.RecordID)
	switch {
	case !ok:
		rec = m.recording(o.Format, o.Frontend, o.BackendID)
	case rec.BackendID != o.BackendID:
		return errors.New("the recording is another backend's")
	case strings.Contains(rec.XML, "<type>"+o.Format+"</type>"):
		return nil
	default:
		i := strings.LastIndex(rec.XML, "</playback>")
		if i < 0 {
			return nil
		}
		rec.XML = rec.XML[:i] + m.formatXML(o.Format) + rec.XML[i:]
	}
	if !validNames(rec.Meta) {
		return errors.New("metadata.xml has meta names that are not XML names")
	}
	res, err := c.cluster.Apply(ctx, &fsm.PutRecordings{Recordings: []fsm.Recording{rec}})
	if err == nil && res.Error != nil {
		err = res.Error
	}
	return err
}

// validNames: meta names become element names in the entry's XML.
func validNames(meta map[string]string) bool {
	for k := range meta {
		if k == "" || bytes.ContainsAny([]byte(k), "<>&\"' /=") {
			return false
		}
	}
	return true
}
