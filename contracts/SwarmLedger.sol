// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title SwarmLedger: membership, sync-round agreement and an audit trail for Swarm Learning.
/// @notice No model data is stored here: only members, votes, sample counts and model hashes.
///         Admins add members (an Ethereum address bound to a SPIFFE ID); members register their
///         transport endpoint, CURVE public key and SVID certificate hash, then vote `ready` once
///         per round. A round closes when `minPeers` have voted and either every member the
///         session expects has voted or the quorum wait has passed (`minPeers` voters say so by
///         their own clocks with `askToClose`, or the block clock does); its participant list is frozen
///         in vote order. A failed attempt is retried as `attempt + 1`.
///         Until a session's first round closes it expects every active member. After
///         that it expects the members present: those who took part in the last closed attempt,
///         plus any member who has voted since. A member that misses a closed attempt (it died, or
///         came too late) is not waited for again until it votes; `leave` says so at once.
///         A session's rules (`minPeers` and the `rules` string the nodes compare: the merge
///         strategy and any later setting) are its one source of truth. The creator may set them;
///         otherwise the first member to join fixes them with `fixRules`. Either way they never
///         change afterwards, and no vote is taken before they are fixed. Each vote names the
///         rules it is cast under (`rulesHash`: keccak256 of `minPeers` and `rules`, packed) and
///         is refused unless they are the session's.
contract SwarmLedger {
    struct Member {
        string spiffeId;
        bool active;
        bool registered;
        string endpoint;
        bytes32 curveKey;
        bytes32 svidHash;
    }

    struct Session {
        bool exists;
        uint32 minPeers;
        uint32 quorumWait;
        uint32 roundTimeout;
        string name;
        string rules;
        bytes32 rulesHash;
    }

    struct Vote {
        bool voted;
        uint64 nSamples;
        bytes32 previousMergedHash;
    }

    struct Presence {
        bool started;
        address[] members;
        mapping(address => bool) isPresent;
    }

    struct Round {
        uint64 openedAt;
        bool closed;
        address[] participants;
        mapping(address => Vote) votes;
        uint32 asks;
        mapping(address => bool) asked;
    }

    struct Latest {
        bool any;
        uint64 round;
        uint32 attempt;
    }

    mapping(address => bool) public isAdmin;
    uint256 public adminCount;
    mapping(address => Member) private members;
    address[] private memberList;
    mapping(address => bool) private listed;
    uint256 public activeMemberCount;
    mapping(bytes32 => Session) private sessions;
    bytes32[] private sessionList;
    mapping(bytes32 => mapping(uint64 => mapping(uint32 => Round))) private rounds;
    mapping(bytes32 => Presence) private presence;
    mapping(bytes32 => Latest) private latest;

    event AdminAdded(address indexed admin, address indexed by);
    event AdminRemoved(address indexed admin, address indexed by);
    event MemberAdded(address indexed member, string spiffeId, address indexed by);
    event MemberRemoved(address indexed member, address indexed by);
    event MemberRegistered(
        address indexed member, string endpoint, bytes32 curveKey, bytes32 svidHash
    );
    event SessionCreated(
        bytes32 indexed session, string name, uint32 minPeers, uint32 quorumWait, uint32 roundTimeout
    );
    event RulesFixed(bytes32 indexed session, address indexed by, uint32 minPeers, string rules);
    event Voted(
        bytes32 indexed session,
        uint64 indexed round,
        uint32 attempt,
        address indexed member,
        uint64 nSamples,
        bytes32 previousMergedHash,
        uint256 position
    );
    event Left(bytes32 indexed session, address indexed member);
    event RoundAgreed(
        bytes32 indexed session, uint64 indexed round, uint32 attempt, address[] participants
    );
    event Reported(
        bytes32 indexed session,
        uint64 indexed round,
        uint32 attempt,
        address indexed reporter,
        address accused,
        bytes32 evidence
    );
    event Receipt(
        bytes32 indexed session,
        uint64 indexed round,
        uint32 attempt,
        address indexed member,
        bytes32 contributionHash,
        bytes32 mergedHash,
        bool initial
    );

    error NotAdmin(address caller);
    error NotAMember(address account);
    error AlreadyMember(address account);
    error NotRegistered(address account);
    error LastAdmin();
    error AlreadyAdmin(address account);
    error InvalidSpiffeId(string spiffeId);
    error InvalidRegistration();
    error SessionExists(bytes32 session);
    error UnknownSession(bytes32 session);
    error InvalidSessionParameters();
    error RulesAlreadyFixed(bytes32 session);
    error RulesNotFixed(bytes32 session);
    error RulesMismatch(bytes32 session, bytes32 rulesHash);
    error AlreadyVoted(address member, uint64 round, uint32 attempt);
    error RoundClosed(bytes32 session, uint64 round, uint32 attempt);
    error PreviousAttemptOpen(bytes32 session, uint64 round, uint32 attempt);
    error QuorumNotReached(uint256 votes, uint32 minPeers);
    error QuorumWaitNotOver(uint64 until);
    error RoundNotOpen(bytes32 session, uint64 round, uint32 attempt);
    error NotVoted(address member, uint64 round, uint32 attempt);

    modifier onlyAdmin() {
        if (!isAdmin[msg.sender]) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlyActiveMember() {
        if (!members[msg.sender].active) revert NotAMember(msg.sender);
        _;
    }

    constructor() {
        isAdmin[msg.sender] = true;
        adminCount = 1;
        emit AdminAdded(msg.sender, msg.sender);
    }

    // ------------------------------------------------------------------ admins

    function addAdmin(address account) external onlyAdmin {
        if (isAdmin[account]) revert AlreadyAdmin(account);
        isAdmin[account] = true;
        adminCount += 1;
        emit AdminAdded(account, msg.sender);
    }

    function removeAdmin(address account) external onlyAdmin {
        if (!isAdmin[account]) revert NotAdmin(account);
        if (adminCount == 1) revert LastAdmin();
        isAdmin[account] = false;
        adminCount -= 1;
        emit AdminRemoved(account, msg.sender);
    }

    // ----------------------------------------------------------------- members

    function addMember(address account, string calldata spiffeId) external onlyAdmin {
        if (members[account].active) revert AlreadyMember(account);
        bytes memory id = bytes(spiffeId);
        if (id.length < 10 || id.length > 2048 || !_startsWithSpiffe(id)) {
            revert InvalidSpiffeId(spiffeId);
        }
        members[account] = Member(spiffeId, true, false, "", bytes32(0), bytes32(0));
        activeMemberCount += 1;
        if (!listed[account]) {
            listed[account] = true;
            memberList.push(account);
        }
        emit MemberAdded(account, spiffeId, msg.sender);
    }

    /// @notice Takes effect at once: the member can no longer register or vote, it leaves every
    ///         session, and a vote it cast in a round that has not closed yet is taken back.
    function removeMember(address account) external onlyAdmin {
        Member storage m = members[account];
        if (!m.active) revert NotAMember(account);
        activeMemberCount -= 1;
        m.active = false;
        m.registered = false;
        for (uint256 i = 0; i < sessionList.length; i++) {
            bytes32 session = sessionList[i];
            _leave(session, account);
            Latest storage l = latest[session];
            if (l.any) _takeBackVote(rounds[session][l.round][l.attempt], account);
        }
        emit MemberRemoved(account, msg.sender);
    }

    /// @notice Publish (or update) this member's transport endpoint, CURVE key and SVID hash.
    function register(string calldata endpoint, bytes32 curveKey, bytes32 svidHash)
        external
        onlyActiveMember
    {
        if (bytes(endpoint).length == 0 || bytes(endpoint).length > 512 || curveKey == bytes32(0)) {
            revert InvalidRegistration();
        }
        Member storage m = members[msg.sender];
        m.registered = true;
        m.endpoint = endpoint;
        m.curveKey = curveKey;
        m.svidHash = svidHash;
        emit MemberRegistered(msg.sender, endpoint, curveKey, svidHash);
    }

    // ---------------------------------------------------------------- sessions

    /// @notice `minPeers` 0 with empty `rules` leaves the rules to the first member that joins.
    function createSession(
        string calldata name,
        uint32 minPeers,
        uint32 quorumWait,
        uint32 roundTimeout,
        string calldata rules
    ) external onlyAdmin returns (bytes32 session) {
        session = keccak256(bytes(name));
        if (sessions[session].exists) revert SessionExists(session);
        if (
            roundTimeout == 0 || bytes(name).length == 0 || bytes(rules).length > 1024
                || (minPeers == 0) != (bytes(rules).length == 0)
        ) {
            revert InvalidSessionParameters();
        }
        bytes32 rulesHash = minPeers == 0 ? bytes32(0) : keccak256(abi.encodePacked(minPeers, rules));
        sessions[session] =
            Session(true, minPeers, quorumWait, roundTimeout, name, rules, rulesHash);
        sessionList.push(session);
        emit SessionCreated(session, name, minPeers, quorumWait, roundTimeout);
        if (minPeers != 0) emit RulesFixed(session, msg.sender, minPeers, rules);
    }

    /// @notice Fix the rules of a session created without them; only the first call succeeds.
    function fixRules(bytes32 session, uint32 minPeers, string calldata rules)
        external
        onlyActiveMember
    {
        Session storage s = sessions[session];
        if (!s.exists) revert UnknownSession(session);
        if (s.minPeers != 0) revert RulesAlreadyFixed(session);
        if (minPeers == 0 || bytes(rules).length == 0 || bytes(rules).length > 1024) {
            revert InvalidSessionParameters();
        }
        s.minPeers = minPeers;
        s.rules = rules;
        s.rulesHash = keccak256(abi.encodePacked(minPeers, rules));
        emit RulesFixed(session, msg.sender, minPeers, rules);
    }

    // ------------------------------------------------------------------ rounds

    /// @notice Vote to take part in `round` (attempt `attempt`) with `nSamples` training samples;
    ///         `previousMergedHash` is this member's SHA-256 of the merged model it loaded last;
    ///         `rulesHash` names the session rules the member votes under (see the title).
    function ready(
        bytes32 session,
        uint64 round,
        uint32 attempt,
        uint64 nSamples,
        bytes32 previousMergedHash,
        bytes32 rulesHash
    ) external onlyActiveMember {
        Session storage s = sessions[session];
        if (!s.exists) revert UnknownSession(session);
        if (s.minPeers == 0) revert RulesNotFixed(session);
        if (rulesHash != s.rulesHash) revert RulesMismatch(session, s.rulesHash);
        if (!members[msg.sender].registered) revert NotRegistered(msg.sender);
        if (attempt > 0 && !rounds[session][round][attempt - 1].closed) {
            revert PreviousAttemptOpen(session, round, attempt - 1);
        }
        Round storage r = rounds[session][round][attempt];
        if (r.closed) revert RoundClosed(session, round, attempt);
        if (r.votes[msg.sender].voted) revert AlreadyVoted(msg.sender, round, attempt);
        if (r.participants.length == 0) {
            r.openedAt = uint64(block.timestamp);
            Latest storage l = latest[session];
            if (!l.any || round > l.round || (round == l.round && attempt > l.attempt)) {
                latest[session] = Latest(true, round, attempt);
            }
        }
        r.votes[msg.sender] = Vote(true, nSamples, previousMergedHash);
        r.participants.push(msg.sender);
        Presence storage p = presence[session];
        if (!p.isPresent[msg.sender]) {
            p.isPresent[msg.sender] = true;
            p.members.push(msg.sender);
        }
        emit Voted(
            session, round, attempt, msg.sender, nSamples, previousMergedHash, r.participants.length
        );
        if (_closable(s, p, r)) _close(session, round, attempt, r, p);
    }

    /// @notice This member stops training in `session`: rounds no longer wait for it (until it
    ///         votes again). Nodes call it when they finish; leaving twice does nothing.
    function leave(bytes32 session) external {
        if (!sessions[session].exists) revert UnknownSession(session);
        _leave(session, msg.sender);
    }

    /// @notice Close a round once `minPeers` voted and the quorum wait has passed.
    function closeRound(bytes32 session, uint64 round, uint32 attempt) external onlyActiveMember {
        Session storage s = sessions[session];
        if (!s.exists) revert UnknownSession(session);
        Round storage r = rounds[session][round][attempt];
        if (r.closed) revert RoundClosed(session, round, attempt);
        if (r.participants.length == 0) revert RoundNotOpen(session, round, attempt);
        if (r.participants.length < s.minPeers) {
            revert QuorumNotReached(r.participants.length, s.minPeers);
        }
        Presence storage p = presence[session];
        if (!_closable(s, p, r)) revert QuorumWaitNotOver(r.openedAt + s.quorumWait);
        _close(session, round, attempt, r, p);
    }

    /// @notice A voter whose own clock says the quorum wait has passed asks to close the round;
    ///         once `minPeers` voters asked, it closes without the members it still expects.
    ///         Block time is no good measure of that wait: chains that mine a block per
    ///         transaction run their clock ahead (a block at least a second after the last),
    ///         and no block comes while everyone waits.
    function askToClose(bytes32 session, uint64 round, uint32 attempt) external onlyActiveMember {
        Session storage s = sessions[session];
        if (!s.exists) revert UnknownSession(session);
        Round storage r = rounds[session][round][attempt];
        if (r.closed) revert RoundClosed(session, round, attempt);
        if (!r.votes[msg.sender].voted) revert NotVoted(msg.sender, round, attempt);
        if (!r.asked[msg.sender]) {
            r.asked[msg.sender] = true;
            r.asks += 1;
        }
        Presence storage p = presence[session];
        if (_closable(s, p, r)) _close(session, round, attempt, r, p);
    }

    /// @notice A voter of a closed round attempt reports another voter whose merged shard the
    ///         shard's other owners outvoted (owner replicas); `evidence` is the SHA-256 of the
    ///         outvoted copy. Only an event: `swarmlib audit` shows who reported whom.
    function report(bytes32 session, uint64 round, uint32 attempt, address accused, bytes32 evidence)
        external
        onlyActiveMember
    {
        if (!sessions[session].exists) revert UnknownSession(session);
        Round storage r = rounds[session][round][attempt];
        if (!r.closed) revert RoundNotOpen(session, round, attempt);
        if (!r.votes[msg.sender].voted) revert NotVoted(msg.sender, round, attempt);
        if (!r.votes[accused].voted) revert NotVoted(accused, round, attempt);
        emit Reported(session, round, attempt, msg.sender, accused, evidence);
    }

    /// @notice A voter of a closed round attempt records what it took part with: the SHA-256
    ///         of the contribution vector it sent, of the merged model it loaded, and whether
    ///         the round merged as the initial one (everyone takes the first participant's).
    ///         Only an event: `swarmlib audit --verify` checks disclosed contributions against it.
    function receipt(
        bytes32 session,
        uint64 round,
        uint32 attempt,
        bytes32 contributionHash,
        bytes32 mergedHash,
        bool initial
    ) external onlyActiveMember {
        if (!sessions[session].exists) revert UnknownSession(session);
        Round storage r = rounds[session][round][attempt];
        if (!r.closed) revert RoundNotOpen(session, round, attempt);
        if (!r.votes[msg.sender].voted) revert NotVoted(msg.sender, round, attempt);
        emit Receipt(session, round, attempt, msg.sender, contributionHash, mergedHash, initial);
    }

    // ------------------------------------------------------------------- views

    function getMember(address account)
        external
        view
        returns (
            string memory spiffeId,
            bool active,
            bool registered,
            string memory endpoint,
            bytes32 curveKey,
            bytes32 svidHash
        )
    {
        Member storage m = members[account];
        return (m.spiffeId, m.active, m.registered, m.endpoint, m.curveKey, m.svidHash);
    }

    /// @notice Several members' records in one call: a node reads every participant's endpoint
    ///         and keys each round, and one call costs the chain far less than one per member.
    function getMembers(address[] calldata accounts) external view returns (Member[] memory out) {
        out = new Member[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) out[i] = members[accounts[i]];
    }

    function memberAddresses() external view returns (address[] memory) {
        return memberList;
    }

    function getSession(bytes32 session)
        external
        view
        returns (
            bool exists,
            string memory name,
            uint32 minPeers,
            uint32 quorumWait,
            uint32 roundTimeout,
            string memory rules
        )
    {
        Session storage s = sessions[session];
        return (s.exists, s.name, s.minPeers, s.quorumWait, s.roundTimeout, s.rules);
    }

    function sessionIds() external view returns (bytes32[] memory) {
        return sessionList;
    }

    function getRound(bytes32 session, uint64 round, uint32 attempt)
        external
        view
        returns (uint64 openedAt, bool closed, address[] memory participants)
    {
        Round storage r = rounds[session][round][attempt];
        return (r.openedAt, r.closed, r.participants);
    }

    /// @notice A round attempt and, once it has closed, its participants' member records, in one
    ///         call: what a waiting node reads before the exchange (one call fewer each round).
    function getRoundWithMembers(bytes32 session, uint64 round, uint32 attempt)
        external
        view
        returns (uint64 openedAt, bool closed, address[] memory participants, Member[] memory members_)
    {
        Round storage r = rounds[session][round][attempt];
        participants = r.participants;
        if (r.closed) {
            members_ = new Member[](participants.length);
            for (uint256 i = 0; i < participants.length; i++) members_[i] = members[participants[i]];
        }
        return (r.openedAt, r.closed, participants, members_);
    }

    /// @notice The highest round and attempt anyone voted in, and whether it has closed: where a
    ///         node that comes late joins, without scanning the `Voted` events of the whole chain.
    function latestRound(bytes32 session)
        external
        view
        returns (bool any, uint64 round, uint32 attempt, bool closed)
    {
        Latest storage l = latest[session];
        return (l.any, l.round, l.attempt, rounds[session][l.round][l.attempt].closed);
    }

    /// @notice Whether a round of `session` has closed, and the members its next round waits for.
    function getPresence(bytes32 session)
        external
        view
        returns (bool started, address[] memory members_)
    {
        Presence storage p = presence[session];
        return (p.started, p.members);
    }

    function getVote(bytes32 session, uint64 round, uint32 attempt, address member)
        external
        view
        returns (bool voted, uint64 nSamples, bytes32 previousMergedHash)
    {
        Vote storage v = rounds[session][round][attempt].votes[member];
        return (v.voted, v.nSamples, v.previousMergedHash);
    }

    // --------------------------------------------------------------- internals

    function _closable(Session storage s, Presence storage p, Round storage r)
        private
        view
        returns (bool)
    {
        uint256 votes = r.participants.length;
        if (votes < s.minPeers) return false;
        uint256 expected = p.started ? p.members.length : activeMemberCount;
        return votes >= expected || r.asks >= s.minPeers
            || block.timestamp >= r.openedAt + s.quorumWait;
    }

    function _close(
        bytes32 session,
        uint64 round,
        uint32 attempt,
        Round storage r,
        Presence storage p
    ) private {
        r.closed = true;
        p.started = true;
        // whoever the session expected but did not vote is not waited for again until it votes
        for (uint256 i = p.members.length; i > 0; i--) {
            address m = p.members[i - 1];
            if (!r.votes[m].voted) {
                p.isPresent[m] = false;
                p.members[i - 1] = p.members[p.members.length - 1];
                p.members.pop();
            }
        }
        emit RoundAgreed(session, round, attempt, r.participants);
    }

    function _leave(bytes32 session, address member) private {
        Presence storage p = presence[session];
        if (!p.isPresent[member]) return;
        p.isPresent[member] = false;
        for (uint256 i = 0; i < p.members.length; i++) {
            if (p.members[i] == member) {
                p.members[i] = p.members[p.members.length - 1];
                p.members.pop();
                break;
            }
        }
        emit Left(session, member);
    }

    /// @dev A removed member's vote in an open round: out of the participants, order kept.
    function _takeBackVote(Round storage r, address member) private {
        if (r.closed || !r.votes[member].voted) return;
        delete r.votes[member];
        if (r.asked[member]) {
            r.asked[member] = false;
            r.asks -= 1;
        }
        uint256 n = r.participants.length;
        for (uint256 i = 0; i < n; i++) {
            if (r.participants[i] != member) continue;
            for (uint256 k = i; k + 1 < n; k++) r.participants[k] = r.participants[k + 1];
            r.participants.pop();
            break;
        }
    }

    function _startsWithSpiffe(bytes memory id) private pure returns (bool) {
        bytes memory prefix = bytes("spiffe://");
        for (uint256 i = 0; i < prefix.length; i++) {
            if (id[i] != prefix[i]) return false;
        }
        return true;
    }
}
