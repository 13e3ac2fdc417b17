package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path"
	"strconv"
)

// The server API: what a platform's own backend asks of the realtime tier
// over HTTP (api/openapi.json describes it):
//
//	POST /publish     {"room":R,"type":T,"data":D[,"from":F]} → {"id":…,"offset":N,"epoch":E}
//	POST /publish     {"user":U,"type":T,"data":D[,"from":F]} → {"id":…}
//	GET  /presence?room=R → {"users":[{"user_id":…,"connections":n,"status":…}]}
//	GET  /presence?user=U → {"online":bool,"connections":n}
//	POST /disconnect  {"user":U} → {}
//
// Errors are {"error":{"code":…,"message":…}} with the socket's stable codes:
// 400 (bad_json, bad_room, bad_data, unknown_type), 401 (unauthorized), 405
// (method_not_allowed), 413 (too_large), 503 (publish_failed, unavailable).

// APIConfig configures NewAPI. Its zero value serves every request: mount
// it behind your own authentication, or set Authorize.
//
// It is a plain value, copied by NewAPI.
type APIConfig struct {
	// Authorize decides whether r may use the API; an error answers 401.
	// nil: every request may.
	Authorize func(r *http.Request) error
}

// API serves the server API for one Handler. All methods may be called
// concurrently.
type API struct {
	h   *Handler
	cfg APIConfig
}

// NewAPI returns the server API of h as an http.Handler. It routes by the
// last element of the path, so it can be mounted anywhere:
// mux.Handle("/api/", realtime.NewAPI(h, cfg)) or, with chi,
// r.Mount("/api", realtime.NewAPI(h, cfg)).
func NewAPI(h *Handler, cfg APIConfig) *API { return &API{h: h, cfg: cfg} }

// Error codes only the server API uses.
const (
	apiCodeMethod   = "method_not_allowed"
	apiCodeTooLarge = "too_large"
)

// checkTarget checks an API call's target, exactly one of room and user
// (oneOf says so when not), and returns the error code and message, or ""
// when it is valid.
func checkTarget(room, user, oneOf string) (code, msg string) {
	switch {
	case (room == "") == (user == ""):
		return ErrCodeBadData, oneOf
	case room != "" && !ValidRoomName(room):
		return ErrCodeBadRoom, badRoomMessage
	case user != "" && !ValidUserID(user):
		return ErrCodeBadData, "user must be 1-256 bytes without control characters"
	}
	return "", ""
}

// ServeHTTP answers one API request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Authorize != nil {
		if err := a.cfg.Authorize(r); err != nil {
			apiError(w, http.StatusUnauthorized, ErrCodeUnauthorized, "missing or wrong API key")
			return
		}
	}
	var method string
	var serve func(http.ResponseWriter, *http.Request)
	switch path.Base(r.URL.Path) {
	case "publish":
		method, serve = http.MethodPost, a.publish
	case "presence":
		method, serve = http.MethodGet, a.presence
	case "disconnect":
		method, serve = http.MethodPost, a.disconnect
	default:
		apiError(w, http.StatusNotFound, ErrCodeNotFound, "no such API call")
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		apiError(w, http.StatusMethodNotAllowed, apiCodeMethod, "use "+method)
		return
	}
	serve(w, r)
}

// apiPublish is the body of POST /publish.
type apiPublish struct {
	Room string          `json:"room"`
	User string          `json:"user"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	From string          `json:"from"`
}

// apiPublished answers POST /publish.
type apiPublished struct {
	ID     string `json:"id"`
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var in apiPublish
	if !a.decode(w, r, &in) {
		return
	}
	if code, msg := checkTarget(in.Room, in.User, `give exactly one of "room" and "user"`); code != "" {
		apiError(w, http.StatusBadRequest, code, msg)
		return
	}
	switch {
	case !validType(in.Type):
		apiError(w, http.StatusBadRequest, ErrCodeUnknownType, "type must be 1-64 characters of a-z, 0-9, '_', '-', '.'")
		return
	case len(in.From) > MaxUserIDLength:
		apiError(w, http.StatusBadRequest, ErrCodeBadData, "from is too long")
		return
	}
	msg := &Message{Type: in.Type, Room: in.Room, From: in.From, Data: in.Data}
	ctx, cancel := context.WithTimeout(r.Context(), a.h.cfg.PublishTimeout)
	defer cancel()
	var err error
	if in.User != "" {
		err = a.h.PublishToUser(ctx, in.User, msg)
	} else {
		err = a.h.Publish(ctx, msg)
	}
	if err != nil {
		a.h.logger.Warn("realtime: API publish", "room", in.Room, "user", in.User, "err", err)
		apiError(w, http.StatusServiceUnavailable, ErrCodePublishFailed, "not delivered; try again")
		return
	}
	apiJSON(w, apiPublished{ID: msg.ID, Offset: msg.Offset, Epoch: msg.Epoch})
}

// apiRoomPresence and apiUserPresence answer GET /presence.
type apiRoomPresence struct {
	Users []MemberInfo `json:"users"`
}

type apiUserPresence struct {
	Online      bool `json:"online"`
	Connections int  `json:"connections"`
}

func (a *API) presence(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room, user := q.Get("room"), q.Get("user")
	ctx, cancel := context.WithTimeout(r.Context(), a.h.cfg.PublishTimeout)
	defer cancel()
	if code, msg := checkTarget(room, user, "give exactly one of the parameters room and user"); code != "" {
		apiError(w, http.StatusBadRequest, code, msg)
		return
	}
	switch {
	case room != "":
		ms, err := a.h.RoomMembers(ctx, room)
		if err != nil {
			a.unavailable(w, err)
			return
		}
		if ms == nil {
			ms = []MemberInfo{} // [], not null
		}
		apiJSON(w, apiRoomPresence{Users: ms})
	default:
		n, err := a.h.UserConnections(ctx, user)
		if err != nil {
			a.unavailable(w, err)
			return
		}
		apiJSON(w, apiUserPresence{Online: n > 0, Connections: n})
	}
}

func (a *API) disconnect(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User string `json:"user"`
	}
	if !a.decode(w, r, &in) {
		return
	}
	if !ValidUserID(in.User) {
		apiError(w, http.StatusBadRequest, ErrCodeBadData, `"user" must be 1-256 bytes without control characters`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.h.cfg.PublishTimeout)
	defer cancel()
	if err := a.h.DisconnectUser(ctx, in.User); err != nil {
		a.unavailable(w, err)
		return
	}
	apiJSON(w, struct{}{})
}

// decode reads r's JSON body into v, answering 400 or 413 if it cannot.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, int64(a.h.cfg.MaxMessageSize)+4096)
	err := json.NewDecoder(r.Body).Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		apiError(w, http.StatusRequestEntityTooLarge, apiCodeTooLarge, "body over "+strconv.FormatInt(tooLarge.Limit, 10)+" bytes")
	case err != nil:
		apiError(w, http.StatusBadRequest, ErrCodeBadJSON, "body must be a JSON object")
	default:
		return true
	}
	return false
}

func (a *API) unavailable(w http.ResponseWriter, err error) {
	a.h.logger.Warn("realtime: API", "err", err)
	apiError(w, http.StatusServiceUnavailable, ErrCodeUnavailable, "could not be read now; try again")
}

func apiJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error ErrorData `json:"error"`
	}{ErrorData{Code: code, Message: text}})
}
