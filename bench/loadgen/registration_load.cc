// Native load generator for bench/registration.py: registrations against a running registry,
// with a fixed number of them in flight, at little CPU cost of its own.
//
// One registration is what an agent does at boot: GetChallenge, then Register with its join
// token, its Ed25519 public key, the proof of possession and its CSR. Each concurrent client
// is one such agent after another, on its own channel by default (a real agent has its own
// connection; a registry made of several processes sharing the port with SO_REUSEPORT
// balances connections, not calls).
//
//   registration_load --target 127.0.0.1:8443 --bundle bundle.pem --input FILE
//                     [--concurrency 64] [--channels 64] [--threads 1] [--sync-stdin]
//
// FILE holds, for each registration, its join token and the DER of its P-256 CSR, each as an
// unsigned 64-bit big-endian length followed by that many bytes. The Ed25519 identity keys
// are made here with libsodium before the timed part and never leave this process.
//
// With --sync-stdin, once every channel is connected it prints {"ready":true} and waits for
// a line on stdin before starting, so that the caller can sample the server's CPU time
// around the timed part alone. At the end it prints one JSON line: registrations attempted,
// succeeded, failures by status code, elapsed seconds and its own CPU seconds (all threads).

#include <sodium.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include "mesh/v1/registration.grpc.pb.h"

namespace {

using mesh::v1::Challenge;
using mesh::v1::GetChallengeRequest;
using mesh::v1::RegisterRequest;
using mesh::v1::RegisterResponse;
using mesh::v1::RegistrationService;

// mesh/registration/proof.py: PROOF_TAG.
constexpr char kProofTag[] = "trustmesh/register/v1";
constexpr auto kCallTimeout = std::chrono::seconds(60);
constexpr auto kConnectTimeout = std::chrono::seconds(30);

struct Options {
  std::string target;
  std::string bundle;
  std::string input;
  int concurrency = 64;
  int channels = 0;  // 0: one per concurrent client
  int threads = 1;
  bool sync_stdin = false;
};

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "registration_load: " << message << std::endl;
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Fail(arg + " needs a value");
      return argv[++i];
    };
    auto positive = [&]() {
      std::string text = value();
      char* end = nullptr;
      long number = std::strtol(text.c_str(), &end, 10);
      if (*end != '\0' || number < 1 || number > 100000) Fail(arg + ": not a count: " + text);
      return static_cast<int>(number);
    };
    if (arg == "--target") options.target = value();
    else if (arg == "--bundle") options.bundle = value();
    else if (arg == "--input") options.input = value();
    else if (arg == "--concurrency") options.concurrency = positive();
    else if (arg == "--channels") options.channels = positive();
    else if (arg == "--threads") options.threads = positive();
    else if (arg == "--sync-stdin") options.sync_stdin = true;
    else Fail("unknown argument " + arg);
  }
  if (options.target.empty() || options.bundle.empty() || options.input.empty()) {
    Fail("--target, --bundle and --input are required");
  }
  if (options.channels == 0) options.channels = options.concurrency;
  if (options.channels > options.concurrency) options.channels = options.concurrency;
  return options;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One agent's boot material: from the input file, and an identity key made here.
struct Agent {
  std::string join_token;
  std::string csr_der;
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
  unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
};

std::vector<Agent> LoadAgents(const std::string& path) {
  std::string data = ReadFile(path);
  size_t at = 0;
  auto field = [&]() {
    if (data.size() - at < 8) Fail(path + ": truncated length at byte " + std::to_string(at));
    uint64_t length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | static_cast<unsigned char>(data[at++]);
    if (data.size() - at < length) Fail(path + ": truncated field at byte " + std::to_string(at));
    std::string out = data.substr(at, length);
    at += length;
    return out;
  };
  std::vector<Agent> agents;
  while (at < data.size()) {
    Agent agent;
    agent.join_token = field();
    agent.csr_der = field();
    crypto_sign_keypair(agent.public_key, agent.secret_key);
    agents.push_back(std::move(agent));
  }
  if (agents.empty()) Fail(path + ": no registrations");
  return agents;
}

// mesh._internal.encoding.length_prefixed: each part preceded by its length, u64 big-endian.
void AppendLengthPrefixed(std::string& out, const void* data, size_t length) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(length) >> shift) & 0xff));
  }
  out.append(static_cast<const char*>(data), length);
}

// mesh.registration.proof_message: the exact bytes signed as proof of possession.
std::string ProofMessage(const std::string& trust_domain, const std::string& challenge,
                         const unsigned char* public_key, const std::string& csr_der) {
  unsigned char csr_digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(csr_digest, reinterpret_cast<const unsigned char*>(csr_der.data()),
                     csr_der.size());
  std::string message;
  message.reserve(5 * 8 + sizeof(kProofTag) + trust_domain.size() + challenge.size() + 64);
  AppendLengthPrefixed(message, kProofTag, sizeof(kProofTag) - 1);
  AppendLengthPrefixed(message, trust_domain.data(), trust_domain.size());
  AppendLengthPrefixed(message, challenge.data(), challenge.size());
  AppendLengthPrefixed(message, public_key, crypto_sign_PUBLICKEYBYTES);
  AppendLengthPrefixed(message, csr_digest, sizeof(csr_digest));
  return message;
}

// Outcomes beside the 17 gRPC status codes: an OK answer that is not a new registration.
enum Outcome : int {
  kNotCreated = 17,
  kEmptySvidChain = 18,
  kOutcomes = 19,
};

const char* OutcomeName(int outcome) {
  static const char* const names[kOutcomes] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED", "OK_BUT_NOT_CREATED", "OK_BUT_EMPTY_SVID_CHAIN",
  };
  return names[outcome];
}

struct Run {
  explicit Run(std::vector<Agent>& all) : agents(all) {}

  std::vector<Agent>& agents;
  std::atomic<size_t> next{0};
  std::atomic<int> active{0};
  std::atomic<uint64_t> outcomes[kOutcomes] = {};
  grpc::CompletionQueue queue;
};

// One concurrent client: registers agents one after another until none is left. It has at
// most one call outstanding, so only the thread that took its completion touches it.
class Client {
 public:
  Client(Run& run, RegistrationService::Stub& stub) : run_(run), stub_(stub) {}

  // Starts the next registration; false when there is none left.
  bool Start() {
    agent_ = run_.next.fetch_add(1);
    if (agent_ >= run_.agents.size()) return false;
    step_ = Step::kChallenge;
    context_ = NewContext();
    challenge_call_ = stub_.PrepareAsyncGetChallenge(context_.get(), GetChallengeRequest(),
                                                     &run_.queue);
    challenge_call_->StartCall();
    challenge_call_->Finish(&challenge_, &status_, this);
    return true;
  }

  // Handles the completion of the outstanding call; false when this client is done.
  bool Proceed() {
    if (step_ == Step::kChallenge) {
      if (status_.ok()) {
        SendRegister();
        return true;
      }
      Record(status_.error_code());
    } else if (!status_.ok()) {
      Record(status_.error_code());
    } else if (!response_.created()) {
      Record(kNotCreated);
    } else if (response_.svid().cert_chain_size() == 0 || response_.svid().cert_chain(0).empty()) {
      Record(kEmptySvidChain);
    } else {
      Record(grpc::StatusCode::OK);
    }
    return Start();
  }

 private:
  enum class Step { kChallenge, kRegister };

  static std::unique_ptr<grpc::ClientContext> NewContext() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    return context;
  }

  void SendRegister() {
    const Agent& agent = run_.agents[agent_];
    std::string message = ProofMessage(challenge_.trust_domain(), challenge_.nonce(),
                                       agent.public_key, agent.csr_der);
    unsigned char proof[crypto_sign_BYTES];
    crypto_sign_detached(proof, nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size(), agent.secret_key);
    RegisterRequest request;
    request.set_join_token(agent.join_token);
    request.set_public_key(agent.public_key, sizeof(agent.public_key));
    request.set_challenge(challenge_.nonce());
    request.set_proof(proof, sizeof(proof));
    request.set_csr(agent.csr_der);
    step_ = Step::kRegister;
    response_.Clear();
    context_ = NewContext();
    register_call_ = stub_.PrepareAsyncRegister(context_.get(), request, &run_.queue);
    register_call_->StartCall();
    register_call_->Finish(&response_, &status_, this);
  }

  void Record(int outcome) { run_.outcomes[outcome].fetch_add(1, std::memory_order_relaxed); }

  Run& run_;
  RegistrationService::Stub& stub_;
  size_t agent_ = 0;
  Step step_ = Step::kChallenge;
  std::unique_ptr<grpc::ClientContext> context_;
  Challenge challenge_;
  RegisterResponse response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Challenge>> challenge_call_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<RegisterResponse>> register_call_;
};

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void Poll(Run& run) {
  void* tag = nullptr;
  bool ok = false;
  while (run.queue.Next(&tag, &ok)) {
    // Finish() always completes with ok=true; a failed call carries its status instead.
    if (!static_cast<Client*>(tag)->Proceed() && run.active.fetch_sub(1) == 1) {
      run.queue.Shutdown();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  // Debian's Abseil tracks lock order on every mutex gRPC takes (a debugging aid that
  // costs the load generator CPU on each call); it is not needed here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (sodium_init() < 0) Fail("libsodium failed to initialise");
  std::vector<Agent> agents = LoadAgents(options.input);

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(options.bundle);
  auto credentials = grpc::SslCredentials(tls);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<RegistrationService::Stub>> stubs;
  for (int i = 0; i < options.channels; ++i) {
    grpc::ChannelArguments args;
    // Channels with equal arguments would otherwise share one connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(grpc::CreateCustomChannel(options.target, credentials, args));
    stubs.push_back(RegistrationService::NewStub(channels.back()));
  }
  for (auto& channel : channels) channel->GetState(/*try_to_connect=*/true);
  auto connect_deadline = std::chrono::system_clock::now() + kConnectTimeout;
  for (auto& channel : channels) {
    if (!channel->WaitForConnected(connect_deadline)) {
      Fail("could not connect to " + options.target + " within 30 s");
    }
  }

  Run run(agents);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < options.concurrency; ++i) {
    clients.push_back(std::make_unique<Client>(run, *stubs[i % options.channels]));
  }
  if (options.sync_stdin) {
    std::cout << "{\"ready\":true}" << std::endl;
    std::string line;
    if (!std::getline(std::cin, line)) Fail("stdin closed before the start");
  }

  double cpu = CpuSeconds();
  auto start = std::chrono::steady_clock::now();
  run.active = static_cast<int>(clients.size());
  for (auto& client : clients) {
    if (!client->Start() && run.active.fetch_sub(1) == 1) run.queue.Shutdown();
  }
  std::vector<std::thread> pollers;
  for (int i = 1; i < options.threads; ++i) pollers.emplace_back(Poll, std::ref(run));
  Poll(run);
  for (auto& poller : pollers) poller.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  cpu = CpuSeconds() - cpu;

  std::string failures;
  for (int outcome = 1; outcome < kOutcomes; ++outcome) {
    uint64_t count = run.outcomes[outcome].load();
    if (count == 0) continue;
    if (!failures.empty()) failures += ",";
    failures += "\"" + std::string(OutcomeName(outcome)) + "\":" + std::to_string(count);
  }
  for (Agent& agent : agents) sodium_memzero(agent.secret_key, sizeof(agent.secret_key));
  std::printf(
      "{\"registrations\":%zu,\"succeeded\":%llu,\"failures\":{%s},\"elapsed_s\":%.6f,"
      "\"cpu_s\":%.6f,\"concurrency\":%d,\"channels\":%d,\"threads\":%d}\n",
      agents.size(), static_cast<unsigned long long>(run.outcomes[0].load()), failures.c_str(),
      elapsed, cpu, options.concurrency, options.channels, options.threads);
  return 0;
}
