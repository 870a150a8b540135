"""DIAMETER (RFC 6733 over TCP, port 3868) for node attach: MSM server, sink client.

Claims 41, 56 and 60: a sink (MSR) asks the home network's mobile service
manager (MSM) whether a node may attach, and gets back the node's static routes
and workgroup filters -- or the node's certificate. scapy's
``scapy.contrib.diameter`` AVP table is the declaration of every AVP (name,
type, flags; ours are added to it); the wire work is a strict one-pass codec
driven by that table (``avps.Avp``, ``message.parse_avps``/``encode``), checked
byte for byte against scapy's own encoding in the tests. The peer state machine
is ours (``peer.py``).

Modules: ``constants`` (codes), ``avps`` (scapy AVP table additions, ``Avp``,
helpers), ``message`` (header/AVP checks, decode/encode), ``peer`` (CER/CEA, DWR/DWA,
DPR/DPA, error answers), ``nasreq`` (AA-Request/Answer), ``rules`` (Framed-Route,
IPFilterRule), ``server`` (``DiameterServer``, ``AuthResult``, backend interface),
``client`` (``DiameterClient``, ``BlockingDiameterClient``), ``static_backend``,
``config``, ``status``, ``exchange_log``, ``bench`` (AA round trip and AA/s
against a TCP echo of the same bytes).

AVPs used
---------
Base protocol (RFC 6733), in CER/CEA, DWR/DWA, DPR/DPA and error answers:
Origin-Host 264, Origin-Realm 296, Host-IP-Address 257, Vendor-Id 266 (32473),
Product-Name 269, Origin-State-Id 278, Supported-Vendor-Id 265 (32473),
Auth-Application-Id 258 (1 = NASREQ; peers advertising Relay 0xffffffff are
accepted too), Firmware-Revision 267, Result-Code 268, Error-Message 281,
Failed-AVP 279, Disconnect-Cause 273, Session-Id 263, Destination-Realm 283,
Destination-Host 293, Proxy-Info 284 (copied into answers).

Attach application = NASREQ (RFC 7155), app id 1, command 265 AA-Request/Answer:
  request: Session-Id, Auth-Application-Id, Origin-Host/-Realm (sink),
    Destination-Realm (node's home realm), Auth-Request-Type 274
    (3 AUTHORIZE_AUTHENTICATE with an authenticator, 2 AUTHORIZE_ONLY for the
    certificate path, 1 AUTHENTICATE_ONLY = verdict without routes/filters),
    User-Name 1 = node identity/FQDN, User-Password 2 = the
    authenticator (opaque bytes), Framed-IP-Address 8 = node address (4 octets),
    NAS-IP-Address 4 / NAS-Identifier 32 = the sink,
    TB-Authenticated-Data (vendor 32473, code 1) = bytes the authenticator covers,
    TB-Certificate-Request (vendor 32473, code 2, Unsigned32 1) = send the node's
    certificate (claim 56).
  answer: Result-Code 2001 DIAMETER_SUCCESS or 4001
    DIAMETER_AUTHENTICATION_REJECTED (Reply-Message 18 says why), User-Name,
    Auth-Request-Type, Auth-Session-State 277 = 1 (no session state, no STR),
    Framed-Route 22 (repeated) e.g. "0.0.0.0/0 10.1.0.254 10" (default route) and
    "10.1.0.0/16 0.0.0.0 1" (home range, lower cost; claim 43),
    NAS-Filter-Rule 400 (repeated, IPFilterRule) e.g.
    "permit in ip from assigned to 10.1.0.0/16" (workgroup filters, claim 41),
    TB-Certificate (vendor 32473, code 3) = node's X.509 certificate, PEM.
Vendor 32473 is RFC 5612's example enterprise number; our vendor AVPs have the
M bit clear, so a standard NASREQ server would simply ignore them.

Errors answered (RFC 6733 7.1): 3001 COMMAND_UNSUPPORTED (unknown command),
3007 APPLICATION_UNSUPPORTED, 3008 INVALID_HDR_BITS (E bit on a request; P bit
against the command's definition: CER/DWR/DPR without, AAR with), 3009
INVALID_AVP_BITS (V bit with vendor 0), 3010 UNKNOWN_PEER (request before CER),
3002/3003 wrong destination host/realm, 5001 AVP_UNSUPPORTED (unknown M-bit AVP
at any depth of Grouped AVPs; Failed-AVP holds the path to it), 5004
INVALID_AVP_VALUE, 5005 MISSING_AVP, 5010 NO_COMMON_APPLICATION, 5017
NO_COMMON_SECURITY (TLS-only peer), 5011 UNSUPPORTED_VERSION and 5015
INVALID_MESSAGE_LENGTH (then the connection is closed: framing is lost), 5012
UNABLE_TO_COMPLY (backend failure; a second connection of an Origin-Host that
is open and answers DWR), 5014 INVALID_AVP_LENGTH. A CEA carries our
capabilities whatever its Result-Code; a failed CER closes the connection.
Reserved header and AVP flag bits are ignored (RFC 6733 3, 4.1).
"""

from .client import BlockingDiameterClient, DiameterClient, DiameterUnavailable
from .nasreq import AAAnswer
from .peer import LocalIdentity
from .rules import FilterRule, Route, parse_filter, parse_route
from .server import AuthResult, Backend, DiameterServer

__all__ = [
    "AAAnswer", "AuthResult", "Backend", "BlockingDiameterClient", "DiameterClient",
    "DiameterServer", "DiameterUnavailable", "FilterRule", "LocalIdentity", "Route",
    "parse_filter", "parse_route",
]
